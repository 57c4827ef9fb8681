"""Fade strategies for context crops. ``create_fade("gaussian", sigma=30)``."""

from __future__ import annotations

from sam_detect.fade.base import Fade
from sam_detect.registry import Registry

FADES: Registry[Fade] = Registry("fade")


def create_fade(name: str, **kwargs) -> Fade:
    _load_builtin()
    return FADES.create(name, **kwargs)


def list_fades(pattern: str = "*") -> list[str]:
    _load_builtin()
    return FADES.list(pattern)


def _load_builtin() -> None:
    # The strategies are numpy-only and cheap; importing registers them.
    from sam_detect.fade import strategies  # noqa: F401


__all__ = ["FADES", "Fade", "create_fade", "list_fades"]
