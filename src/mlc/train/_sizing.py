"""How many networks to train at once on a device: as many as its memory holds, within reason.

The estimate is per network for one training step (weights, Adam state, gradients, saved activations
for the backward pass of a `batch x length` mini-batch), with a safety margin; on the CPU throughput
stops growing long before memory runs out, so the CPU size is capped.
"""

from __future__ import annotations

import os

import torch

from mlc.models import GRUNetConfig

__all__ = ["bytes_per_network", "choose_population_size"]

# CPU throughput per network peaks near here: measured with the C kernels on 2 cores (one thread),
# 64: 425, 128: 410, 256: 347 model-steps/s (the PyTorch gathers and Adam outgrow the caches)
_CPU_CAP = 128
_GPU_CAP = 16384
_FLOAT = 4


def bytes_per_network(model: GRUNetConfig, batch: int, length: int) -> int:
    """Upper estimate of training memory per network on the plain PyTorch path."""
    state = 5 * model.n_params * _FLOAT  # weights, gradient, 2 Adam moments, a copy while gathering
    # per step and layer autograd keeps about 10 H-wide tensors (gates, pre-activations, h)
    activations = batch * length * model.num_layers * model.hidden_size * 10 * _FLOAT
    widths = model.hidden_size + sum(n_out for _, n_out in model.fc_sizes)  # the head's activations
    head = batch * length * widths * 2 * _FLOAT
    return state + activations + head


def choose_population_size(device: torch.device, per_network: int, memory_fraction: float = 0.6) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return max(1, min(_GPU_CAP, int(free * memory_fraction) // per_network))
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        pages = 8 << 30
    return max(1, min(_CPU_CAP, int(pages * memory_fraction) // per_network))
