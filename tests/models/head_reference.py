"""The MLP head and its loss in plain PyTorch, the reference the fused head kernels (C, Triton) are
tested against; imported by the tests and by the interpreted children they run as scripts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["count_bounds", "head_logits", "head_loss", "miscounted"]


def head_logits(h: torch.Tensor, fcs) -> torch.Tensor:
    """h [M, L, B, H] (rows), fcs [(w [M, out, in], b [M, out])] -> logits [M, L*B, O]."""
    a = h.reshape(h.shape[0], -1, h.shape[-1])
    for i, (w, b) in enumerate(fcs):
        a = torch.baddbmm(b.unsqueeze(1), a, w.transpose(1, 2))
        if i < len(fcs) - 1:
            a = torch.relu(a)
    return a


def head_loss(h: torch.Tensor, y: torch.Tensor, fcs) -> torch.Tensor:
    """Mean BCE-with-logits per model [M] against targets y [M, L, B, O]."""
    a = head_logits(h, fcs)
    return F.binary_cross_entropy_with_logits(a, y.reshape(a.shape), reduction="none").mean(dim=(1, 2))


def count_bounds(h: torch.Tensor, y: torch.Tensor, fcs) -> tuple[torch.Tensor, torch.Tensor]:
    """Per model, the fewest and the most outputs a float32 head may count as right ((logit > 0) ==
    (y > 0.5)): the float64 count, with logits within 1e-5 of 0 allowed either way."""
    z = head_logits(h.double(), [(w.double(), b.double()) for w, b in fcs])
    right, sure = (z > 0) == (y.reshape(z.shape) > 0.5), z.abs() > 1e-5
    return (right & sure).sum(dim=(1, 2)), (right | ~sure).sum(dim=(1, 2))


def miscounted(correct: torch.Tensor, h: torch.Tensor, y: torch.Tensor, fcs) -> float:
    """How many models' counts of right outputs fall outside `count_bounds`."""
    low, high = count_bounds(h, y, fcs)
    return float(((correct < low) | (correct > high)).sum())
