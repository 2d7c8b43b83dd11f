from __future__ import annotations

import ctypes
import ctypes.util

import pytest

from m3e.utils.memory import HeapTrimmer


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


trimmer = HeapTrimmer()
needs_glibc = pytest.mark.skipif(not trimmer.supported, reason="malloc_trim is glibc's")


@needs_glibc
def test_trims_at_most_once_per_interval():
    slow = HeapTrimmer(interval=3600)
    assert not slow.maybe_trim() and not slow.maybe_trim()
    assert slow.trims == 0
    fast = HeapTrimmer(interval=0)
    assert fast.maybe_trim() and fast.maybe_trim()
    assert fast.trims == 2


@needs_glibc
def test_trim_gives_fragmented_free_memory_back():
    """The server's case: freed blocks below a live one stay resident until trimmed."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size, count = 64 * 1024, 3200  # 200 MB in heap-sized blocks (below glibc's mmap threshold)
    blocks = [libc.malloc(size) for _ in range(count)]
    for b in blocks:
        ctypes.memset(b, 1, size)
    for b in blocks[:-1]:  # the last block pins the top of the heap, as a live tensor does
        libc.free(b)
    before = rss_mb()
    assert HeapTrimmer(interval=0).maybe_trim()
    after = rss_mb()
    libc.free(blocks[-1])
    assert before - after > 100, (before, after)
