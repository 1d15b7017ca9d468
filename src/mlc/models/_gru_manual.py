"""The GRU recurrence over a model dimension with a hand-written backward pass (the CPU fast path).

Autograd over the plain loop (`_gru_torch.py`) records about forty tiny nodes per time step and
replays them one by one; with 12-wide hidden states that bookkeeping, not arithmetic, is the cost.
Here the forward pass runs six fused ops per step and keeps only what the backward needs (gates,
the new-gate pre-activation and the hidden states, in step-major buffers so every slice is
contiguous); the backward runs the BPTT recurrence directly and does all weight gradients as a few
large batched matrix products after the loop. Same equations and gate order as PyTorch's nn.GRU.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["gru_layer_manual"]


class _GRULayer(torch.autograd.Function):
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
        x_rows = x.reshape(m, length * b, n_in)  # rows in (step, sequence) order
        gi = torch.baddbmm(b_ih.unsqueeze(1), x_rows, w_ih.transpose(1, 2)).view(m, length, b, 3 * hidden)
        w_hh_t = w_hh.transpose(1, 2).contiguous()  # [M, H, 3H]
        b_hh_row = b_hh.unsqueeze(1)
        h = x.new_zeros(m, b, hidden)
        # per-step tensors stay separate and contiguous; writing into strided slices of one big
        # buffer is several times slower for 12-wide rows
        hs, rs, zs, ns, ghns = [h], [], [], [], []
        for t in range(length):
            gh = torch.baddbmm(b_hh_row, h, w_hh_t)  # [M, B, 3H]
            gi_t = gi[:, t]
            r = torch.add(gi_t[..., :hidden], gh[..., :hidden]).sigmoid_()
            z = torch.add(gi_t[..., hidden : 2 * hidden], gh[..., hidden : 2 * hidden]).sigmoid_()
            ghn = gh[..., 2 * hidden :].contiguous()
            n = torch.addcmul(gi_t[..., 2 * hidden :], r, ghn).tanh_()
            h = torch.lerp(n, h, z)  # (1 - z) n + z h
            hs.append(h)
            rs.append(r)
            zs.append(z)
            ns.append(n)
            ghns.append(ghn)
        ctx.save_for_backward(x_rows, w_ih, w_hh, *hs, *rs, *zs, *ns, *ghns)
        ctx.length = length
        return torch.stack(hs[1:], dim=1)  # [M, L, B, H]

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x_rows, w_ih, w_hh, *saved = ctx.saved_tensors
        length = ctx.length
        hs = saved[: length + 1]
        rs, zs, ns, ghns = (saved[length + 1 + i * length : length + 1 + (i + 1) * length] for i in range(4))
        m, b, hidden = hs[0].shape
        # per-gate blocks of W_hh [M, H, H]: three small products instead of concatenating the gate
        # gradients every step (a 12-wide concatenation costs more than the product it feeds)
        w_hr, w_hz, w_hn = (w_hh[:, g * hidden : (g + 1) * hidden].contiguous() for g in range(3))
        d_r: list[torch.Tensor] = [hs[0]] * length  # d pre-activation of r (input and hidden side)
        d_z: list[torch.Tensor] = [hs[0]] * length
        d_n: list[torch.Tensor] = [hs[0]] * length  # input side of n
        d_hn: list[torch.Tensor] = [hs[0]] * length  # hidden side of n: d(W_hn h + b_hn)
        dh = torch.zeros_like(hs[0])
        for t in range(length - 1, -1, -1):
            dh = dh + grad_out[:, t]
            r, z, n = rs[t], zs[t], ns[t]
            dn = dh - dh * z  # dh (1 - z)
            dpre_n = torch.addcmul(dn, dn * n, n, value=-1)  # dn (1 - n^2)
            dr_r = dpre_n * ghns[t] * r
            dz_z = dh * (hs[t] - n) * z
            d_r[t] = torch.addcmul(dr_r, dr_r, r, value=-1)  # dr r (1 - r)
            d_z[t] = torch.addcmul(dz_z, dz_z, z, value=-1)  # dz z (1 - z)
            d_n[t] = dpre_n
            d_hn[t] = dpre_n * r
            dh = torch.baddbmm(dh * z, d_r[t], w_hr)  # dh_prev = dh z + dgh W_hh
            dh.baddbmm_(d_z[t], w_hz).baddbmm_(d_hn[t], w_hn)

        def rows(steps: list[torch.Tensor]) -> torch.Tensor:  # [M, L*B, H], rows in (step, seq) order
            return torch.stack(steps, dim=1).view(m, length * b, hidden)

        g_r, g_z, g_n, g_hn = rows(d_r), rows(d_z), rows(d_n), rows(d_hn)
        h_prev = rows(list(hs[:-1]))
        d_x = None
        if ctx.needs_input_grad[0]:
            w_i = [w_ih[:, g * hidden : (g + 1) * hidden] for g in range(3)]
            d_x = torch.bmm(g_r, w_i[0]).baddbmm_(g_z, w_i[1]).baddbmm_(g_n, w_i[2]).view(m, length, b, -1)
        return (
            d_x,
            torch.cat([torch.bmm(g.transpose(1, 2), x_rows) for g in (g_r, g_z, g_n)], dim=1),
            torch.cat([torch.bmm(g.transpose(1, 2), h_prev) for g in (g_r, g_z, g_hn)], dim=1),
            torch.cat([g.sum(dim=1) for g in (g_r, g_z, g_n)], dim=1),
            torch.cat([g.sum(dim=1) for g in (g_r, g_z, g_hn)], dim=1),
        )


def gru_layer_manual(
    x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
) -> torch.Tensor:
    """Time-major GRU layer: x [M, L, B, I] -> hidden states [M, L, B, H] (zero initial state)."""
    return _GRULayer.apply(x, w_ih, w_hh, b_ih, b_hh)
