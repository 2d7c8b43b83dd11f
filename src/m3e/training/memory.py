"""Host memory on long CPU runs.

glibc keeps the memory of freed activations in its arenas, and with batch shapes changing every step the pool
fragments and grows: on the 2-core CPU the m3e-small-zh recipe held 5-10 GB between steps. ``malloc_trim``
hands the free pages back, but the next step then faults them in again (trimming after every step made passage
steps 50% slower, measured), so the guard trims only when the process holds more than a budget.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux), else None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_resident_bytes() -> int:
    """The most this process has held resident so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def physical_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


class MemoryGuard:
    """Call :meth:`after_step` between optimizer steps: it trims the C heap when resident memory is over
    ``fraction`` of the machine's memory (0: never)."""

    def __init__(self, fraction: float, *, rss: Callable[[], int | None] = resident_bytes,
                 trim: Callable[[int], int] | None | bool = True, total: int | None = None) -> None:
        self._rss = rss
        from m3e.utils.memory import load_trim

        self._trim = load_trim() if trim is True else trim or None
        total = total if total is not None else physical_bytes()
        self.budget = int(fraction * total) if fraction > 0 and total else None
        self.trims = 0

    def after_step(self) -> bool:
        if self._trim is None or self.budget is None:
            return False
        held = self._rss()
        if held is None or held <= self.budget:
            return False
        self._trim(0)
        self.trims += 1
        return True
