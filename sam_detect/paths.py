"""Default folders: example libraries and the model cache, each overridable by env var."""

from __future__ import annotations

import os
from pathlib import Path

LIBRARY_ENV = "SAM_DETECT_LIBRARY_PATH"
CACHE_ENV = "SAM_DETECT_CACHE"


def default_library_path() -> Path:
    """``$SAM_DETECT_LIBRARY_PATH``, else the per-user data folder's ``libraries``."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("sam-detect", appauthor=False)) / "libraries"


def default_cache_path() -> Path:
    """``$SAM_DETECT_CACHE``, else the per-user cache folder's ``models``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("sam-detect", appauthor=False)) / "models"
