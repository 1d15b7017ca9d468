"""Keep the memory a CPU training step frees for the next step (glibc's malloc).

A step allocates the same few dozen tensors every time, several MB each (each GRU layer's output,
the gradients, the gathered batch), and frees them at its end. glibc serves blocks above its mmap
threshold (128 KiB to start, raised adaptively up to 32 MiB) with fresh mappings and hands freed
memory at the top of its heap back to the OS past a trim threshold, so every step page-faulted its
memory back in, zero-filled: 5,000-29,000 faults per step of 64-128 mlds-gru networks, 10% of the
process's time in the kernel. With blocks up to 32 MiB served from the heap and the heap never
trimmed below 2 GiB of free top, a step faults nothing after the first, and is 7-15% faster
(benchmarks/NOTES.md). Resident memory then stays at the step's peak between steps, which is what
the population was sized for anyway.

The trainer's threads (one range of networks each) share that one heap: in arenas of their own,
glibc keeps each thread's memory in heaps of at most 64 MiB and unmaps a heap once it is empty, so a
thread holding a 96 MiB step (64 networks) faulted as before: 600-22,800 times a step with two
threads, 0-900 with one arena (it settles once the threads' peaks have met). The arena's lock is
taken a few hundred times a step, by tensor allocations. A thread that allocated before the call
keeps the arena it has, so call it first, before any thread starts.
"""

from __future__ import annotations

import ctypes
import functools
import platform

__all__ = ["keep_freed_memory"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit systems: larger values are refused
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int


@functools.cache
def keep_freed_memory() -> bool:
    """Tune this process's allocator so freed blocks are reused instead of returned to the OS; True
    where that was done (glibc), False elsewhere (other C libraries keep their own policy). Process-
    wide, so applications (the executors, the benchmarks) call it, not the library's training code."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
        and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        and mallopt(_M_ARENA_MAX, 1)
    )
