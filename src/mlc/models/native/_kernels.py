"""The C kernels' entry points (ctypes signatures), whether they are usable here, and the thread split.

Models are split into contiguous ranges across `set_threads(n)` Python threads (default: every core
this process may use); ctypes drops the GIL during a call, and a thread waiting on another blocks
instead of spinning, so a busy core slows a step instead of stalling it (OpenMP's spin-waits stalled
the PyTorch path by 50x on this project's 2-core CI machine). PyTorch's own intra-op threads are a
separate setting.

Two grains of split: `run_split` splits one kernel call, so anything can call the kernels on a whole
population; `run_parallel` runs whole pieces of work (the trainer's: an epoch of a range of models,
gathers, copies and Adam included) one per thread, and inside them the kernels run single-threaded.
"""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

import torch

from mlc._host import usable_cpus
from mlc.models.native._build import NativeUnavailable, build_note, load

__all__ = [
    "lane_ready",
    "lanes",
    "library",
    "model_ranges",
    "native_available",
    "native_build_note",
    "native_threads",
    "native_unavailable_reason",
    "pointers",
    "ptr",
    "run_parallel",
    "run_split",
    "set_threads",
]

_threads: int | None = None  # None: every CPU this process may use (affinity, container quota)
_in_part = threading.local()  # `part` is set inside a piece of `run_parallel`: kernels there run alone

_T = TypeVar("_T")
_INTERRUPT_POLL_S = 0.1  # how soon run_parallel raises an interrupt delivered to another thread


@functools.cache
def library() -> ctypes.CDLL:
    lib = load()
    i64, p = ctypes.c_int64, ctypes.c_void_p
    pp = ctypes.POINTER(ctypes.c_void_p)
    lib.mlc_gru_forward.argtypes = [i64] * 4 + [p] * 6 + [i64, i64]
    lib.mlc_gru_backward.argtypes = [i64] * 4 + [p] * 12 + [i64, i64]
    lib.mlc_head_loss.argtypes = [i64, i64, i64, p, p, pp, pp, p, p, p, p, p, pp, pp, i64, i64]
    for fn in (lib.mlc_gru_forward, lib.mlc_gru_backward, lib.mlc_head_loss):
        fn.restype = ctypes.c_int
    for fn in (lib.mlc_head_max_layers, lib.mlc_lanes):
        fn.argtypes = []
        fn.restype = ctypes.c_int
    return lib


@functools.cache
def native_unavailable_reason() -> str | None:
    """None when the C kernels build and load here, else why not (cached for the process)."""
    try:
        library()
    except (NativeUnavailable, OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None


def native_build_note() -> str | None:
    """Why the kernels were built outside the shared cache (a cache others could write), or None."""
    return build_note() if native_available() else None


def native_available() -> bool:
    return native_unavailable_reason() is None


def set_threads(n: int | None) -> None:
    """How many threads the C kernels split models across; None restores the default (all cores)."""
    global _threads
    if n is not None and n < 1:
        raise ValueError(f"thread count must be at least 1, not {n}")
    _threads = n


def native_threads() -> int:
    """Threads a kernel call splits its models across: one inside a piece of `run_parallel`."""
    if getattr(_in_part, "part", False):
        return 1
    return _threads if _threads is not None else usable_cpus()


@functools.cache
def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="mlc-native")


# A forked child inherits the pools without their threads, and would wait on them forever.
os.register_at_fork(after_in_child=_pool.cache_clear)


def model_ranges(m: int, parts: int) -> list[tuple[int, int]]:
    """[0, m) as `parts` contiguous (begin, end) ranges differing in length by at most one (fewer
    when m < parts, none when m = 0)."""
    n = max(1, min(parts, m))
    bounds = [m * i // n for i in range(n + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False) if hi > lo]


def run_split(fn: Any, m: int, *args: Any) -> None:
    """fn(*args, m_begin, m_end) over [0, m) in `native_threads()` contiguous ranges."""
    threads = native_threads()  # outside a piece it reads the cgroup's quota: once per call
    ranges = model_ranges(m, threads)
    if len(ranges) <= 1:
        codes = [fn(*args, 0, m)]
    else:
        pool = _pool(threads)
        codes = [f.result() for f in [pool.submit(fn, *args, lo, hi) for lo, hi in ranges]]
    if any(codes):
        raise MemoryError(f"a C kernel ({fn.__name__}) could not allocate its scratch memory")


def _as_part(call: Callable[[], _T]) -> _T:
    _in_part.part = True
    try:
        return call()
    finally:
        _in_part.part = False


def run_parallel(calls: Sequence[Callable[[], _T]]) -> list[_T]:
    """Each call on a thread of its own (the C kernels single-threaded inside it), their results in
    order; a single call, or calls made from inside a piece, run here one after another. Every call
    finishes before the first exception is raised: a piece that failed leaves the others' work whole.
    An interrupt (Ctrl-C) of the wait is raised at once while the pieces go on: a caller whose pieces
    are long gives them a way to stop (the trainer's ranges check an event at every step).

    The pieces must not share tensors they write, nor views of one tensor that autograd saves: views
    share a version counter, and one piece's in-place update would fail another's backward."""
    if len(calls) <= 1 or getattr(_in_part, "part", False):
        return [call() for call in calls]
    pool = _pool(max(len(calls), native_threads()))  # one pool whatever the count (networks stop)
    futures = [pool.submit(_as_part, call) for call in calls]
    # in slices: Python runs a signal's handler on the main thread between bytecodes, so a Ctrl-C
    # that the kernel hands to one of the pool's threads would otherwise wait for every piece to end
    while wait(futures, timeout=_INTERRUPT_POLL_S).not_done:
        pass
    return [f.result() for f in futures]


@functools.cache
def lanes() -> int:
    """Floats per lane vector in the kernels as built here (16 with AVX-512, 8 with AVX2, 4 else)."""
    return library().mlc_lanes()


def lane_ready(t: torch.Tensor) -> torch.Tensor:
    """`t` contiguous and aligned to a lane vector, as the kernels load whole vectors from it."""
    t = t.contiguous()
    if t.data_ptr() % (4 * lanes()):  # a view at an offset: a fresh allocation is aligned
        t = t.clone()
    return t


def ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def pointers(tensors: list[torch.Tensor]) -> Any:
    """A C array of the tensors' data pointers (for kernels that take one tensor per layer)."""
    return (ctypes.c_void_p * len(tensors))(*(t.data_ptr() for t in tensors))
