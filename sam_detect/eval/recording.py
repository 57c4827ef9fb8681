"""Wrappers that let the evaluation protocol see what the pipeline's stages produced, and
the temporary store its example library lives in."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from sam_detect.instances import Instances


# ----------------------------------------------------------------------------------------
# recording wrappers: see what the pipeline's stages produced, unchanged
# ----------------------------------------------------------------------------------------
class RecordingSegmenter:
    """Passes calls through to a segmenter and keeps the last candidates it proposed."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.last: Instances | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def segment(self, image: np.ndarray, profile: dict | None = None) -> Instances:
        from sam_detect.segment.base import segment_with_profile

        out = segment_with_profile(self._inner, image, profile)
        self.last = out
        return out

    def prompt(self, image: np.ndarray, box: Any = None, point: Any = None) -> Instances:
        return self._inner.prompt(image, box=box, point=point)


class RecordingStore:
    """Passes calls through to a store and keeps the last search results."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.last: list | None = None  # every result since the last reset, in call order

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def search(self, name: str, queries: np.ndarray, top_k: int, **options: Any) -> list:
        out = self._inner.search(name, queries, top_k, **options)
        self.last = list(out) if self.last is None else [*self.last, *out]
        return out


def temp_store(config: Any, library: str) -> tuple[Any, Callable[[], None], str]:
    """A fresh store for the temporary library ``library``: (store, cleanup, description).

    On a Qdrant server, which other libraries share, the cleanup deletes ``library`` alone:
    another eval's temporary library, or a user's named like one, is left as it is."""
    from sam_detect.store import create_store

    opts = dict(config.store_options)
    if config.store == "qdrant" and opts.get("url"):
        store = create_store("qdrant", **opts)

        def cleanup() -> None:
            if library in store.list_libraries():
                store.delete_library(library)
            store.close()

        return store, cleanup, f"qdrant server {opts['url']}"
    if config.store in ("qdrant", "edge"):
        tmp = tempfile.mkdtemp(prefix="sam-detect-eval-")
        store = create_store(config.store, path=tmp)

        def cleanup() -> None:
            store.close()
            shutil.rmtree(tmp, ignore_errors=True)

        return store, cleanup, f"{config.store} in a temporary folder"
    store = create_store(config.store)
    return store, store.close, config.store
