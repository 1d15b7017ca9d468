"""A fast path's first run on a device, checked against the PyTorch population before it trains:
the fused kernels are compiled on the machine that trains, for what it has (Triton for the GPU it
finds, which fails on one it cannot target: too old an architecture, a driver older than its PTX;
the C kernels by the local compiler for the local instruction set, NEON and other compilers never
run here), and a kernel that fails would fail every work unit a volunteer's worker took, while a
miscompiled one would store wrong networks as trained. So a population of fused kernels first runs
one small training step and one evaluation on the device, compared with the PyTorch population in
float64, and the caller falls back and says why when it fails, as it does when no C compiler builds
the CPU kernels.
"""

from __future__ import annotations

import torch

from mlc.models._population import Population

__all__ = ["first_run_failure"]

_TOLERANCE = 1e-4  # relative; a working kernel is ~1e-7 off, a wrong one off by far more
_FLIPPED = 1e-3  # of the outputs, whose sign may differ from float64's where a logit is ~0
_MEMBERS = 2
_BATCH = 32  # the trainer's, so the kernels run with its tiles
# Triton compiles one variant per divisibility of each integer argument by 16; with L a multiple of
# 4 every stride divides as at the presets' L = 100 and 20, so the trainer reuses the checked build.
_LENGTH = 4


def first_run_failure(candidate: Population, reference: Population, device: torch.device) -> str | None:
    """None when `candidate` computes one training step's loss and gradient, and an evaluation's loss
    and correct outputs, on `device` as `reference` does in float64 (within 1e-4 relative; a correct
    count within 0.1% of the outputs), else why not, in one line."""
    generator = torch.Generator().manual_seed(0)
    config = candidate.config
    params = candidate.init(range(_MEMBERS))
    x = (torch.rand(_MEMBERS, _LENGTH, _BATCH, config.input_size, generator=generator) > 0.5).float()
    y = (torch.rand(_MEMBERS, _LENGTH, _BATCH, config.output_size, generator=generator) > 0.5).float()
    with torch.enable_grad():  # the caller's no_grad must not read as a kernel failure
        try:
            on_device = params.to(device), x.to(device), y.to(device)
            loss, grad = candidate.loss_and_grad(*on_device)
            seen = candidate.loss_and_correct_views(candidate.views(on_device[0]), *on_device[1:])
            # to the CPU: waits for the kernels, so their errors surface here
            loss, grad, (seen_loss, correct) = loss.cpu(), grad.cpu(), (t.cpu() for t in seen)
        except Exception as exc:  # noqa: BLE001 - Triton raises many types (compile, PTX, launch); all mean "fall back"
            message = str(exc).strip().splitlines()
            return f"{type(exc).__name__}: {message[0] if message else 'no message'}"
        ref_loss, ref_grad = reference.loss_and_grad(params.double(), x.double(), y.double())
    error = max(_relative_error(loss, ref_loss), _relative_error(grad, ref_grad))
    if not error < _TOLERANCE:  # NaN fails too
        return f"a first step disagreed with the PyTorch path (relative error {error:.1e})"
    ref_seen_loss, ref_correct = reference.loss_and_correct_views(
        reference.views(params.double()), x.double(), y.double()
    )
    error = _relative_error(seen_loss, ref_seen_loss)
    flipped = (correct.double() - ref_correct).abs().max().item()
    if not (error < _TOLERANCE and flipped <= _FLIPPED * y[0].numel()):
        return (
            f"a first evaluation disagreed with the PyTorch path (loss relative error {error:.1e}, "
            f"{flipped:.0f} outputs of {y[0].numel()} judged otherwise)"
        )
    return None


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.double() - reference).norm() / reference.norm()).item()
