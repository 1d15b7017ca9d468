"""The C kernels for the CPU: their sources (`gru.c`, `head.c`, `vec.h`), the build that compiles them
for this CPU on first use, and their Python bindings (autograd functions over ctypes calls).

The kernels' CPU thread split (`set_threads`, `run_parallel`) lives here too, since the PyTorch
fallback's training threads use the same pool.
"""

from mlc.models.native._kernels import (
    model_ranges,
    native_available,
    native_build_note,
    native_threads,
    native_unavailable_reason,
    run_parallel,
    set_threads,
)

__all__ = [
    "model_ranges",
    "native_available",
    "native_build_note",
    "native_threads",
    "native_unavailable_reason",
    "run_parallel",
    "set_threads",
]
