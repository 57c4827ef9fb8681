"""Interactive annotation in the browser: ``sam-detect ui`` / ``AnnotationUI(detector).run()``.

Importing this package is cheap; the web framework loads with :class:`AnnotationUI`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AnnotationSession", "AnnotationUI", "UILimits", "create_app"]


def __getattr__(name: str) -> Any:
    if name in ("AnnotationUI", "create_app"):
        from sam_detect.ui import server

        return getattr(server, name)
    if name == "AnnotationSession":
        from sam_detect.ui import session

        return session.AnnotationSession
    if name == "UILimits":
        from sam_detect.ui import images

        return images.UILimits
    raise AttributeError(f"module 'sam_detect.ui' has no attribute {name!r}")
