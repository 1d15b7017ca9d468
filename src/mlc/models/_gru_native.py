"""The GRU recurrence in C for the CPU (`native/gru.c`), as a differentiable time-major layer.

`gru_layer_native` computes what `gru_layer_manual` computes (same contract, same gate equations) but
runs each model's whole sequence, forward and backpropagation through time, in one C call with the
batch as the vector lanes.
"""

from __future__ import annotations

from typing import Any

import torch

from mlc.models._native_kernels import library, ptr, run_split

__all__ = ["gru_layer_native"]


class _NativeGRULayer(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        w_ih: torch.Tensor,
        w_hh: torch.Tensor,
        b_ih: torch.Tensor,
        b_hh: torch.Tensor,
    ) -> torch.Tensor:
        m, length, b, n_in = x.shape
        hidden = w_hh.shape[2]
        x, w_ih, w_hh, b_ih, b_hh = (t.contiguous() for t in (x, w_ih, w_hh, b_ih, b_hh))
        h = x.new_empty(m, length, b, hidden)
        run_split(
            library().mlc_gru_forward, m, length, b, n_in, hidden, *map(ptr, (x, w_ih, w_hh, b_ih, b_hh, h))
        )
        ctx.save_for_backward(x, w_ih, w_hh, b_ih, b_hh, h)  # the backward recomputes the gates
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_h: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, w_ih, w_hh, b_ih, b_hh, h = ctx.saved_tensors
        m, length, b, n_in = x.shape
        hidden = w_hh.shape[2]
        grad_h = grad_h.contiguous()
        dx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        dw_ih, dw_hh = torch.empty_like(w_ih), torch.empty_like(w_hh)
        db_ih, db_hh = x.new_empty(m, 3 * hidden), x.new_empty(m, 3 * hidden)
        run_split(
            library().mlc_gru_backward, m, length, b, n_in, hidden,
            *map(ptr, (x, w_ih, w_hh, b_ih, b_hh, h, grad_h, dx, dw_ih, dw_hh, db_ih, db_hh)),
        )  # fmt: skip
        return dx, dw_ih, dw_hh, db_ih, db_hh


def gru_layer_native(
    x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
) -> torch.Tensor:
    """Time-major GRU layer in C: x [M, L, B, I] -> hidden states [M, L, B, H] (zero initial state).

    float32 CPU tensors only; differentiable in all five inputs."""
    tensors = (x, w_ih, w_hh, b_ih, b_hh)
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
        raise ValueError("gru_layer_native takes float32 CPU tensors; use gru_layer_manual otherwise")
    if x.dim() != 4 or w_hh.dim() != 3:
        raise ValueError(
            f"x must be [M, L, B, I] and w_hh [M, 3H, H], got {tuple(x.shape)}, {tuple(w_hh.shape)}"
        )
    m, _, _, n_in = x.shape
    hidden = w_hh.shape[2]
    if n_in == 0 or hidden == 0:
        raise ValueError(f"input and hidden sizes must be positive, got {n_in} and {hidden}")
    if w_ih.shape != (m, 3 * hidden, n_in) or w_hh.shape != (m, 3 * hidden, hidden):
        raise ValueError(
            f"weight shapes {tuple(w_ih.shape)}, {tuple(w_hh.shape)} do not fit x {tuple(x.shape)}"
        )
    if b_ih.shape != (m, 3 * hidden) or b_hh.shape != (m, 3 * hidden):
        raise ValueError(f"bias shapes {tuple(b_ih.shape)}, {tuple(b_hh.shape)} must be ({m}, {3 * hidden})")
    return _NativeGRULayer.apply(*tensors)
