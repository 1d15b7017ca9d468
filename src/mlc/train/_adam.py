"""Adam over a population's flat parameter matrix, one step count per network.

Same update as `torch.optim.Adam` (no amsgrad; `weight_decay` as its L2 term added to the gradient;
`warmup_steps` as a linear warm-up and `lr_half_life_steps` as an exponential decay of the learning
rate, both by each network's own step count), written over rows so that networks at different steps
(merged from different work units) can share one update.
"""

from __future__ import annotations

import torch

from mlc.train._config import TrainConfig

__all__ = ["adam_step"]


@torch.no_grad()
def adam_step(
    params: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: torch.Tensor,
    config: TrainConfig,
) -> None:
    """In place: params, exp_avg, exp_avg_sq [M, P]; step [M] int64 (incremented)."""
    step += 1
    if config.weight_decay:
        grad = grad.add(params, alpha=config.weight_decay)
    exp_avg.lerp_(grad, 1 - config.beta1)
    exp_avg_sq.mul_(config.beta2).addcmul_(grad, grad, value=1 - config.beta2)
    t = step.to(torch.float64)
    bias_correction1 = 1 - config.beta1**t
    bias_correction2_sqrt = (1 - config.beta2**t).sqrt()
    lr = config.lr * (t / config.warmup_steps).clamp(max=1.0) if config.warmup_steps else config.lr
    if config.lr_half_life_steps:
        lr = lr * 0.5 ** (t / config.lr_half_life_steps)
    step_size = (lr / bias_correction1).to(params.dtype).unsqueeze(1)  # [M, 1]
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt.to(params.dtype).unsqueeze(1)).add_(config.eps)
    params.addcdiv_(exp_avg * step_size, denom, value=-1.0)
