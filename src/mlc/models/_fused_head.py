"""Autograd for fused head-and-loss kernels (the C one on the CPU, the Triton one on CUDA).

A kernel runs the MLP head and the BCE loss over every row and, in the same pass, the gradients of
each model's loss for an upstream gradient of 1: a loss ends the graph, so backward only has to
scale them by each model's upstream gradient. Outside autograd the kernel computes the loss alone,
and for evaluation the loss and the count of correct outputs, so no logits tensor is ever written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["HeadKernel", "check_head", "fused_head_eval", "fused_head_loss"]

# (h, y, [w, b per Linear], with_grads, with_correct) -> (loss [M], correct outputs [M] or None,
# dh or None, [dw, db per Linear] or [])
HeadKernel = Callable[
    [torch.Tensor, torch.Tensor, list[torch.Tensor], bool, bool],
    tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, list[torch.Tensor]],
]


class _FusedHeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, kernel: HeadKernel, h: torch.Tensor, y: torch.Tensor, *params: torch.Tensor
    ) -> torch.Tensor:
        loss, _, dh, grads = kernel(h, y, list(params), True, False)
        ctx.save_for_backward(dh, *grads)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        saved = ctx.saved_tensors
        # `loss.sum()`'s upstream gradient is all ones, and scaling dh by it was 3-4% of a CPU step
        # (a pass over an activation-sized tensor, outside the kernels' threads). Returning the saved
        # tensors themselves is safe: autograd copies a gradient before a leaf's .grad or an in-place
        # sum may keep it while the graph still holds it (retain_graph). On a GPU the test would
        # cost a sync, so there the scaling always runs.
        if grad_loss.device.type == "cpu" and bool((grad_loss == 1).all()):
            return None, saved[0], None, *saved[1:]
        m = grad_loss.shape[0]
        dh, *grads = (g * grad_loss.view(m, *([1] * (g.dim() - 1))) for g in saved)
        return None, dh, None, *grads


def fused_head_loss(
    kernel: HeadKernel, h: torch.Tensor, y: torch.Tensor, params: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Loss [M] from `kernel`, differentiable in h and params (targets y are constants)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (h, *params)):
        return _FusedHeadLoss.apply(kernel, h, y, *params)
    return kernel(h, y, list(params), False, False)[0]


def fused_head_eval(
    kernel: HeadKernel, h: torch.Tensor, y: torch.Tensor, params: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss [M] and the number of outputs whose sign agrees with the target [M] (float), from `kernel`;
    not differentiable."""
    loss, correct, _, _ = kernel(h, y, list(params), False, True)
    assert correct is not None
    return loss, correct


def check_head(m: int, width: int, fcs: Sequence[tuple[torch.Tensor, torch.Tensor]], y: torch.Tensor) -> None:
    """The checks every fused head makes: the weights of `m` models chain from `width`, and the
    targets `y` are constants as wide as the head's output (a kernel trusts both)."""
    for w, b in fcs:
        if (
            w.dim() != 3
            or b.dim() != 2
            or w.shape[0] != m
            or w.shape[2] != width
            or b.shape != (m, w.shape[1])
        ):
            raise ValueError(
                f"head weights {tuple(w.shape)}, {tuple(b.shape)} do not chain from width {width}"
            )
        width = w.shape[1]
    if y.shape[-1] != width:
        raise ValueError(f"targets {tuple(y.shape)} do not match the head's output width {width}")
    if y.requires_grad:
        raise ValueError("the fused head treats the targets as constants; pass y without requires_grad")
