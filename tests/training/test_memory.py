import ctypes
import sys

import pytest

from m3e.training.memory import MemoryGuard, peak_resident_bytes, resident_bytes


def test_guard_trims_only_above_its_budget():
    held = [5]
    calls = []
    guard = MemoryGuard(0.5, rss=lambda: held[0], trim=calls.append, total=10)
    assert guard.budget == 5
    assert not guard.after_step() and calls == []  # at the budget: nothing to do
    held[0] = 6
    assert guard.after_step() and calls == [0] and guard.trims == 1
    assert not MemoryGuard(0, rss=lambda: 10**12, trim=calls.append, total=10).after_step()  # 0: never
    assert not MemoryGuard(0.5, rss=lambda: None, trim=calls.append, total=10).after_step()  # no /proc
    assert calls == [0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resident memory from /proc, glibc malloc_trim")
def test_trim_hands_freed_heap_memory_back():
    """Many small blocks (below glibc's mmap threshold, so they live in the heap) freed with one kept at the top of
    the heap: glibc can only give the pages back through malloc_trim, which the guard calls."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024) for _ in range(4000)]  # 250 MiB
    for i in range(4000):
        ctypes.memset(blocks[i], 1, 64 * 1024)
    pin = libc.malloc(64 * 1024)
    for b in blocks:
        libc.free(b)
    before = resident_bytes()
    guard = MemoryGuard(1e-9)  # any resident memory is over the budget
    assert guard.after_step() and guard.trims == 1
    after = resident_bytes()
    libc.free(pin)
    assert before - after > 100 * 2**20
    assert peak_resident_bytes() > 0.9 * before  # ru_maxrss and statm count pages slightly differently
