"""The C kernels' entry points (ctypes signatures), whether they are usable here, and the thread split.

Models are split into contiguous ranges across `set_threads(n)` Python threads (default: every core
this process may use); ctypes drops the GIL during a call, and a thread waiting on another blocks
instead of spinning, so a busy core slows a step instead of stalling it (OpenMP's spin-waits stalled
the PyTorch path by 50x on this project's 2-core CI machine). PyTorch's own intra-op threads are a
separate setting.
"""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from mlc._host import usable_cpus
from mlc.models._native_build import NativeUnavailable, load

__all__ = [
    "lane_ready",
    "lanes",
    "library",
    "native_available",
    "native_threads",
    "native_unavailable_reason",
    "pointers",
    "ptr",
    "run_split",
    "set_threads",
]

_threads: int | None = None  # None: every CPU this process may use (affinity, container quota)


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


def native_available() -> bool:
    return native_unavailable_reason() is None


def set_threads(n: int | None) -> None:
    """How many threads the C kernels split models across; None restores the default (all cores)."""
    global _threads
    if n is not None and n < 1:
        raise ValueError(f"thread count must be at least 1, not {n}")
    _threads = n


def native_threads() -> int:
    return _threads if _threads is not None else usable_cpus()


@functools.cache
def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="mlc-native")


# A forked child inherits the pools without their threads, and would wait on them forever.
os.register_at_fork(after_in_child=_pool.cache_clear)


def run_split(fn: Any, m: int, *args: Any) -> None:
    """fn(*args, m_begin, m_end) over [0, m) in `native_threads()` contiguous ranges."""
    n = max(1, min(native_threads(), m))
    if n == 1:
        codes = [fn(*args, 0, m)]
    else:
        bounds = [m * i // n for i in range(n + 1)]
        codes = [
            f.result()
            for f in [_pool(n).submit(fn, *args, lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False)]
        ]
    if any(codes):
        raise MemoryError(f"a C kernel ({fn.__name__}) could not allocate its scratch memory")


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
