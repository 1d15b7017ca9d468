"""A fast path's first run on a device, checked against the PyTorch population before it trains.

Triton compiles its kernels for the GPU it finds, at their first launch. On a GPU it cannot target
(too old an architecture, a driver older than its PTX, a missing ptxas), that launch fails, and a
volunteer's worker would fail every work unit it took. A miscompiled kernel would be worse: wrong
networks, stored as if trained. So before a population of fused kernels trains on a device, it runs
one small step (two networks, 32 sequences of 3 steps: the trainer's kernel variants, compiled once
here and reused) and compares the loss and gradient with the PyTorch population in float64. The
caller falls back to the PyTorch path and says why when it fails, as it does when no C compiler
builds the CPU kernels.
"""

from __future__ import annotations

import torch

from mlc.models._population import Population

__all__ = ["first_run_failure"]

_TOLERANCE = 1e-4  # relative; a working kernel is ~1e-7 off, a wrong one off by far more
_PROBE = {"members": 2, "length": 3, "batch": 32}


def first_run_failure(candidate: Population, reference: Population, device: torch.device) -> str | None:
    """None when `candidate` computes one training step's loss and gradient on `device` as
    `reference` does in float64 (within 1e-4 relative), else why not, in one line."""
    generator = torch.Generator().manual_seed(0)
    config = candidate.config
    m, length, batch = _PROBE["members"], _PROBE["length"], _PROBE["batch"]
    params = candidate.init(range(m))
    x = (torch.rand(m, length, batch, config.input_size, generator=generator) > 0.5).float()
    y = (torch.rand(m, length, batch, config.output_size, generator=generator) > 0.5).float()
    try:
        loss, grad = candidate.loss_and_grad(params.to(device), x.to(device), y.to(device))
        loss, grad = loss.cpu(), grad.cpu()  # waits for the kernels, so their errors surface here
    except Exception as exc:  # noqa: BLE001 - Triton raises many types (compile, PTX, launch); all mean "fall back"
        message = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {message[0] if message else 'no message'}"
    ref_loss, ref_grad = reference.loss_and_grad(params.double(), x.double(), y.double())
    error = max(_relative_error(loss, ref_loss), _relative_error(grad, ref_grad))
    if not error < _TOLERANCE:  # NaN fails too
        return f"a first step disagreed with the PyTorch path (relative error {error:.1e})"
    return None


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.double() - reference).norm() / reference.norm()).item()
