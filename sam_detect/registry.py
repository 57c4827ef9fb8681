"""A tiny registry: name -> factory, with fnmatch listing and helpful errors.

Registration is cheap: a factory is stored, never called, so importing a registry never
imports torch, sam2 or open_clip.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any, Generic, TypeVar

from sam_detect.errors import SettingError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories for one pluggable stage (``kind`` names the stage)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REGISTRY.register("gaussian")`` on a class or factory function."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            doc = help or (factory.__doc__ or "").strip().splitlines()[0:1]
            self._help[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
            return factory

        return deco

    def create(self, name: str, **kwargs) -> T:
        """Build the entry ``name`` with keyword arguments; unknown names list valid ones."""
        try:
            factory = self._factories[name]
        except KeyError:
            valid = ", ".join(sorted(self._factories)) or "(none)"
            raise SettingError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None
        try:
            return factory(**kwargs)
        except TypeError as e:  # a mistyped option: a setting error naming it, not a raw TypeError
            import re

            bad = re.search(r"unexpected keyword argument '(\w+)'", str(e))
            if bad is None or bad.group(1) not in kwargs:
                raise
            from sam_detect.errors import UnknownOptionError

            raise UnknownOptionError(f"unknown {name} {self.kind} option(s) ['{bad.group(1)}'] ({e})") from None
        except ValueError as e:  # an option's value out of range (sigma=-1): the setting error a caller catches
            from sam_detect.errors import SamDetectError

            if isinstance(e, SamDetectError):
                raise
            raise SettingError(f"{name} {self.kind}: {e}") from e

    def factory(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name`` (its signature gives the entry's defaults)."""
        if name not in self._factories:
            self.create(name)  # raises the ValueError that lists the valid names
        return self._factories[name]

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, sorted."""
        return sorted(n for n in self._factories if fnmatch.fnmatch(n, pattern))

    def describe(self, name: str) -> str:
        return self._help.get(name, "")

    def __contains__(self, name: object) -> bool:
        return name in self._factories


def merge_config(cls: type[T], config: T | None, options: dict[str, Any], what: str) -> dict[str, Any]:
    """The fields of ``config`` (a ``cls`` dataclass, or its defaults) updated with ``options``.

    Unknown option names raise ``ValueError`` listing the valid ones (``what`` names the
    component, e.g. ``"classical segmenter"``). Returns a dict to build ``cls`` from.
    """
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise SettingError(f"unknown {what} option(s) {unknown}; valid: {', '.join(sorted(valid))}")
    base = asdict(config) if config is not None else {}
    base.update(options)
    return base
