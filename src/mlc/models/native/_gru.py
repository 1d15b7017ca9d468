"""The GRU recurrence in C for the CPU (`native/gru.c`), as a differentiable layer in the lane layout.

`gru_layer_native` computes what `gru_layer_manual` computes (same gate equations) but runs each
model's whole sequence, forward and backpropagation through time, in one C call with the batch as
the vector lanes. Its tensors are in the lane layout `[M, L, C, B']` (B' = B padded to the lane
width): `LANE_LAYOUT` converts a population's rows on the way in and out, so consecutive layers and
the fused head (`head_loss_native`) never transpose.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mlc.models.native._kernels import lane_ready, lanes, library, ptr, run_split

__all__ = ["LANE_LAYOUT", "LaneLayout", "gru_layer_native"]


class LaneLayout:
    """Rows `[M, L, B, C]` <-> the kernels' lanes `[M, L, C, B']`; lanes past B enter as zeros."""

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[2]
        return F.pad(x.transpose(2, 3), (0, -b % lanes())).contiguous()

    def leave(self, h: torch.Tensor, batch: int) -> torch.Tensor:
        return h[..., :batch].transpose(2, 3)

    def padded(self, batch: int) -> int:
        return batch + -batch % lanes()


LANE_LAYOUT = LaneLayout()


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
        m, length, n_in, b = x.shape
        hidden = w_hh.shape[2]
        x = lane_ready(x)
        w_ih, w_hh, b_ih, b_hh = (t.contiguous() for t in (w_ih, w_hh, b_ih, b_hh))
        h = x.new_empty(m, length, hidden, b)
        run_split(
            library().mlc_gru_forward, m, length, b, n_in, hidden, *map(ptr, (x, w_ih, w_hh, b_ih, b_hh, h))
        )
        ctx.save_for_backward(x, w_ih, w_hh, b_ih, b_hh, h)  # the backward recomputes the gates
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_h: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, w_ih, w_hh, b_ih, b_hh, h = ctx.saved_tensors
        m, length, n_in, b = x.shape
        hidden = w_hh.shape[2]
        grad_h = lane_ready(grad_h)
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
    """GRU layer in C: x [M, L, I, B'] in the lane layout -> hidden states [M, L, H, B'] (zero initial
    state). float32 CPU tensors; differentiable in all five inputs. Lanes past the real batch carry
    finite values that never mix with it; their incoming gradients must be zero (LANE_LAYOUT.leave
    and the fused head make them so)."""
    tensors = (x, w_ih, w_hh, b_ih, b_hh)
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
        raise ValueError("gru_layer_native takes float32 CPU tensors; use gru_layer_manual otherwise")
    if x.dim() != 4 or w_hh.dim() != 3:
        raise ValueError(
            f"x must be [M, L, I, B'] and w_hh [M, 3H, H], got {tuple(x.shape)}, {tuple(w_hh.shape)}"
        )
    m, _, n_in, b = x.shape
    hidden = w_hh.shape[2]
    if n_in == 0 or hidden == 0:
        raise ValueError(f"input and hidden sizes must be positive, got {n_in} and {hidden}")
    if b % lanes():
        raise ValueError(
            f"x's last dimension ({b}) must be padded to the lane width {lanes()}: use LANE_LAYOUT"
        )
    if w_ih.shape != (m, 3 * hidden, n_in) or w_hh.shape != (m, 3 * hidden, hidden):
        raise ValueError(
            f"weight shapes {tuple(w_ih.shape)}, {tuple(w_hh.shape)} do not fit x {tuple(x.shape)}"
        )
    if b_ih.shape != (m, 3 * hidden) or b_hh.shape != (m, 3 * hidden):
        raise ValueError(f"bias shapes {tuple(b_ih.shape)}, {tuple(b_hh.shape)} must be ({m}, {3 * hidden})")
    return _NativeGRULayer.apply(*tensors)
