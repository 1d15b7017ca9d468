"""The GRU recurrence over a leading model dimension, in plain PyTorch ops.

nn.GRU cannot be vmapped, so a population of M networks runs each layer as batched matrix products
(`bmm` over the model dimension) and a Python loop over time. This is the portable fallback and the
reference that fused kernels are tested against. Gate order and equations are PyTorch's:
r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h.
"""

from __future__ import annotations

import torch

__all__ = ["gru_layer_torch"]


def gru_layer_torch(
    x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
) -> torch.Tensor:
    """One GRU layer for M networks from a zero initial state.

    x [M, B, L, I]; w_ih [M, 3H, I]; w_hh [M, 3H, H]; b_ih, b_hh [M, 3H] -> hidden states [M, B, L, H].
    """
    m, b, length, n_in = x.shape
    hidden = w_hh.shape[2]
    gi = torch.baddbmm(b_ih.unsqueeze(1), x.reshape(m, b * length, n_in), w_ih.transpose(1, 2))
    # unbind once: indexing gi[:, :, t] per step would make autograd fill a full-size gradient per step
    gi_steps = gi.reshape(m, b, length, 3 * hidden).unbind(dim=2)  # L x [M, B, 3H]
    w_hh_t = w_hh.transpose(1, 2)  # [M, H, 3H]
    b_hh_row = b_hh.unsqueeze(1)  # [M, 1, 3H]
    h = x.new_zeros(m, b, hidden)
    outputs = []
    for t in range(length):
        gh = torch.baddbmm(b_hh_row, h, w_hh_t)  # [M, B, 3H]
        i_r, i_z, i_n = gi_steps[t].chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h = n + z * (h - n)  # [M, B, H]
        outputs.append(h)
    return torch.stack(outputs, dim=2)  # [M, B, L, H]
