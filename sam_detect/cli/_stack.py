"""Combine click option decorators into one reusable decorator."""

from __future__ import annotations

from collections.abc import Callable


def stack(decorators: list[Callable]) -> Callable:
    """One decorator applying ``decorators`` so options appear in the listed order in --help."""

    def apply(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply
