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
    """The kernel's gradients are kept on ctx rather than saved: when the upstream gradient is all
    ones (`loss.sum()`), backward hands them on as they are, where scaling them by it was 3-4% of a
    CPU step (a pass over an activation-sized tensor, outside the kernels' threads). Whoever receives
    them then owns them, so backward drops its own reference, and a second backward through a
    retained graph recomputes them from the saved inputs. On a GPU the test for ones would cost a
    sync, so there the scaling always runs."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, kernel: HeadKernel, h: torch.Tensor, y: torch.Tensor, *params: torch.Tensor
    ) -> torch.Tensor:
        loss, _, dh, grads = kernel(h, y, list(params), True, False)
        ctx.kernel = kernel
        ctx.save_for_backward(h, y, *params)  # held anyway in training (h by the layer that made it)
        ctx.grads = [dh, *grads]
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        grads = ctx.grads
        if grads is None:  # an earlier backward through this (retained) graph handed them on
            h, y, *params = ctx.saved_tensors
            _, _, dh, rest = ctx.kernel(h, y, params, True, False)
            grads = [dh, *rest]
        if grad_loss.device.type == "cpu" and bool((grad_loss == 1).all()):
            ctx.grads = None
            dh, *rest = grads
        else:
            ctx.grads = grads
            m = grad_loss.shape[0]
            dh, *rest = (g * grad_loss.view(m, *([1] * (g.dim() - 1))) for g in grads)
        return None, dh, None, *rest


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
