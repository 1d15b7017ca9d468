"""The one-network reference loop: nn.GRU, torch.optim.Adam, one network at a time.

This is what a per-network client does; it defines the science the population trainer must
reproduce, and it is the naive baseline the throughput benchmark compares against.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mlc.models import GRUNet
from mlc.train._config import TrainConfig
from mlc.train._data import TrainingArrays, batch_order

__all__ = ["train_reference"]


def train_reference(
    module: GRUNet,
    net_seed: int,
    task: str,
    data: TrainingArrays,
    config: TrainConfig,
    epochs: int,
    on_step: Callable[[], None] | None = None,
) -> np.ndarray:
    """Train `module` in place for `epochs` epochs (no stop rule); returns history [epochs, 3] of
    (train_loss, val_loss, val_accuracy)."""
    opt = torch.optim.Adam(
        module.parameters(), lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps
    )
    warmup, half_life = config.warmup_steps, config.lr_half_life_steps

    def lr_factor(k: int) -> float:
        """Step k (0-based) is the network's step t = k + 1: the population trainer's schedule."""
        factor = min(1.0, (k + 1) / warmup) if warmup else 1.0
        return factor * 0.5 ** ((k + 1) / half_life) if half_life else factor

    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    row = data.tasks.index(task)
    x_all, y_all = data.train_x, data.train_y[row]
    history = np.zeros((epochs, 3), dtype=np.float32)
    for epoch in range(epochs):
        order = torch.from_numpy(batch_order(net_seed, epoch, data.n_train)).to(x_all.device)
        loss_sum = 0.0
        for start in range(0, data.n_train, config.batch_size):
            idx = order[start : start + config.batch_size]
            loss = F.binary_cross_entropy_with_logits(module(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            loss_sum += loss.item() * idx.numel()
            if on_step is not None:
                on_step()
        with torch.no_grad():
            logits = module(data.val_x)
            val_y = data.val_y[row]
            val_loss = float(F.binary_cross_entropy_with_logits(logits, val_y))
            val_acc = float(((logits > 0) == (val_y > 0.5)).float().mean())
        history[epoch] = (loss_sum / data.n_train, val_loss, val_acc)
    return history
