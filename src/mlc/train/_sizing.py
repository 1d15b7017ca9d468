"""How many networks to train at once on a device: as many as its memory holds, within reason.

The estimate is per network for one training epoch on the kernels that will train it (weights, Adam
state and the epoch's working copies of them, the batch order, and what a step of `batch x length`
holds at its peak, from `Population.step_floats`); a fraction of the free memory is left for
the allocator's rounding and the CUDA context. On the CPU throughput stops growing long before memory
runs out, so the CPU size is capped per training thread.
"""

from __future__ import annotations

import torch

from mlc._host import available_memory
from mlc.models import Population

__all__ = ["bytes_per_network", "choose_population_size", "free_memory"]

# CPU throughput per network peaks near this many networks per training thread: each thread's range
# should amortise a step's fixed cost (~4 ms of Python and dispatch) and stay near its core's caches.
# Measured with the C kernels (train_throughput.py, AVX2, 2026-11-26): one thread, 16: 213, 64: 216,
# 128: 196, 256: 171 model-steps/s; two threads, 64: 325, 128: 356, 256: 303. (AVX-512, one thread,
# an earlier day: 64: 425, 128: 410, 256: 347.)
_CPU_NETWORKS_PER_THREAD = 64
_GPU_CAP = 16384
_FLOAT = 4
# Floats per parameter: weights and two Adam moments kept, the epoch's compact copies of the three,
# the gradient (per layer, then concatenated) and Adam's temporaries; 8.4-9.5 measured
_STATE_FLOATS_PER_PARAM = 10
_MARGIN = 1.1  # allocator rounding, and what the per-row counts leave out (with it: 1.1-1.3x measured)


def bytes_per_network(population: Population, batch: int, length: int, n_train: int) -> int:
    """Upper estimate of the memory one network needs while `population` trains it: mini-batches of
    `batch` sequences of `length` steps, drawn in an order over `n_train` sequences (int64), and
    evaluation in passes of `batch` sequences, which hold less than a training step."""
    floats = (
        _STATE_FLOATS_PER_PARAM * population.n_params + 2 * n_train + population.step_floats(batch, length)
    )
    return int(floats * _FLOAT * _MARGIN)


def choose_population_size(
    device: torch.device, per_network: int, memory_fraction: float = 0.6, cpu_threads: int = 1
) -> int:
    """How many networks of `per_network` bytes to train at once: what `memory_fraction` of the free
    memory holds (on the CPU, within the container's limit), at most 16,384 on a GPU and 64 per
    training thread (`cpu_threads`) on the CPU."""
    cap = _GPU_CAP if device.type == "cuda" else _CPU_NETWORKS_PER_THREAD * max(1, cpu_threads)
    return max(1, min(cap, int(free_memory(device) * memory_fraction) // per_network))


def free_memory(device: torch.device) -> int:
    """Bytes free for training on `device`: the GPU's free memory, or the host's available memory
    within the container's limit."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return available_memory()
