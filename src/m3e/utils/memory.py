"""Give freed heap memory back to the operating system in long-running processes.

Inference on CPU allocates activations of a new shape for every batch (batch size x padded length). glibc
keeps the freed blocks in fragmented heaps, so a server's RSS creeps up by hundreds of MB over tens of
thousands of requests although nothing leaks (measured in bench/serve.py --soak: +460 MB over 20,000
requests without trimming, flat with it). ``malloc_trim`` returns those pages; one call costs a few ms, so
it runs at most once per ``interval`` seconds. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time


def load_trim():
    """glibc's ``malloc_trim`` (takes the bytes to keep), or None where there is none."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = load_trim()


class HeapTrimmer:
    """``maybe_trim()`` after each unit of work; trims when ``interval`` seconds have passed since the last."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.trims = 0
        self._last = time.monotonic()
        self._lock = threading.Lock()

    @property
    def supported(self) -> bool:
        return _TRIM is not None

    def maybe_trim(self) -> bool:
        if _TRIM is None:
            return False
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                return False
            self._last = now
        _TRIM(0)
        self.trims += 1
        return True
