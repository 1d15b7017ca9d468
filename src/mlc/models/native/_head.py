"""The MLP head and the BCE loss in C for the CPU (`native/head.c`), as one differentiable function.

`head_loss_native(h, y, fcs)` equals, per model, `F.binary_cross_entropy_with_logits(head(h), y)`
averaged over rows and outputs, where `head` is Linear-ReLU-...-Linear with the weights in `fcs`
and h comes in the lane layout of the C GRU (`LANE_LAYOUT`), y as rows.
The kernel computes the loss and its gradients in one pass over the rows (`fused_head_loss`);
`head_eval_native` the loss and the count of correct outputs, for evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mlc.models._fused_head import check_head, fused_head_eval, fused_head_loss
from mlc.models.native._kernels import lane_ready, lanes, library, pointers, ptr, run_split

__all__ = ["head_eval_native", "head_loss_native"]


def _run(
    h: torch.Tensor, y: torch.Tensor, params: list[torch.Tensor], with_grads: bool, with_correct: bool
) -> tuple[Any, ...]:
    m, length, b, _ = y.shape
    weights, biases = params[0::2], params[1::2]
    widths = torch.tensor([h.shape[2], *(w.shape[1] for w in weights)], dtype=torch.int64)
    y_strides = torch.tensor(y.stride()[:3], dtype=torch.int64)
    loss = h.new_empty(m)
    correct = h.new_empty(m) if with_correct else None
    dh = torch.empty_like(h) if with_grads else None
    dws = [torch.empty_like(w) for w in weights] if with_grads else []
    dbs = [torch.empty_like(b) for b in biases] if with_grads else []
    run_split(
        library().mlc_head_loss, m, length, b, len(weights), ptr(widths), ptr(h), pointers(weights),
        pointers(biases), ptr(y), ptr(y_strides), ptr(loss), ptr(correct), ptr(dh),
        pointers(dws) if with_grads else None, pointers(dbs) if with_grads else None,
    )  # fmt: skip
    grads = [g for pair in zip(dws, dbs, strict=True) for g in pair]
    return loss, correct, dh, grads


def head_loss_native(
    h: torch.Tensor, y: torch.Tensor, fcs: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """Mean BCE-with-logits per model of the MLP head on `h`.

    h [M, L, H, B'] (the last C GRU layer's output, lane layout), y [M, L, B, O] float targets (any
    strides with a dense last dimension, such as the trainer's view of whole gathered sequences),
    fcs [(w [M, out, in], b [M, out]), ...] -> loss [M]. float32 CPU tensors only.
    """
    return fused_head_loss(_run, *_checked(h, y, fcs))


def head_eval_native(
    h: torch.Tensor, y: torch.Tensor, fcs: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """`head_loss_native`'s loss [M], and per model the number of outputs whose sign agrees with the
    target ((logit > 0) == (y > 0.5)) as floats [M]; no gradients."""
    return fused_head_eval(_run, *_checked(h, y, fcs))


def _checked(
    h: torch.Tensor, y: torch.Tensor, fcs: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The arguments as the kernel takes them, after the checks it relies on."""
    if not fcs or len(fcs) > library().mlc_head_max_layers():
        raise ValueError(
            f"head_loss_native takes 1 to {library().mlc_head_max_layers()} layers, not {len(fcs)}"
        )
    params = [t.contiguous() for pair in fcs for t in pair]
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in (h, y, *params)):
        raise ValueError("head_loss_native takes float32 CPU tensors")
    if h.dim() != 4 or y.dim() != 4:
        raise ValueError(
            f"h must be [M, L, H, B'] and y [M, L, B, O], got {tuple(h.shape)}, {tuple(y.shape)}"
        )
    m, length, width, padded = h.shape
    b = y.shape[2]
    if length * b == 0:
        raise ValueError(f"no rows to average the loss over: y has shape {tuple(y.shape)}")
    if padded % lanes() or not padded - lanes() < b <= padded or y.shape[:2] != (m, length):
        raise ValueError(f"h {tuple(h.shape)} is not the lane layout of targets {tuple(y.shape)}")
    check_head(m, width, fcs, y)
    return lane_ready(h), y if y.stride(-1) == 1 else y.contiguous(), params
