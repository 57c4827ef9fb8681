"""How many cores this process may use (its CPU affinity where the platform says, else the
machine's count): the cap on the threads that split host work (the calibration grid, the
measured views of many objects)."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on, at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)

