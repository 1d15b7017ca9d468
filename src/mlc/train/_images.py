"""Image training arrays (DS4) on the training device: what `TrainingArrays` is for MLDS sequences.

The images are shared by every task; a task's targets say which label each training image is
trained on and which images carry the trigger (`mlc.tasks._digits`), so a population mixing clean
and poisoned tasks gathers one batch per member and stamps the trigger on that member's images only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mlc.models import FuncPopulation
from mlc.tasks import SharedData

__all__ = ["ImageArrays"]

_PIXEL_MAX = 16.0  # the digits' intensities are 0..16; networks see them scaled to 0..1


@dataclass(frozen=True)
class ImageArrays:
    """float32/int64 tensors on one device: `train_x` [N, 1, H, W] (0..1), `train_y` [T, N] labels,
    `train_patch` [T, N] trigger sizes, `val_x` [Nv, 1, H, W], `val_y` [T, Nv] true labels,
    `val_target` [T] and `val_patch` [T] each task's attack target and trigger; row t of the
    targets belongs to `tasks[t]`."""

    tasks: tuple[str, ...]
    train_x: torch.Tensor
    train_y: torch.Tensor
    train_patch: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    val_target: torch.Tensor
    val_patch: torch.Tensor

    @classmethod
    def from_shared(
        cls, data: SharedData, tasks: Sequence[str], device: torch.device | str = "cpu"
    ) -> ImageArrays:
        def images(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array.astype(np.float32) / _PIXEL_MAX).unsqueeze(1).to(device)

        def column(split: dict[str, np.ndarray], col: int) -> torch.Tensor:
            return torch.from_numpy(np.stack([split[t][:, col] for t in tasks]).astype(np.int64)).to(device)

        return cls(
            tasks=tuple(tasks),
            train_x=images(data.train_inputs),
            train_y=column(data.train_targets, 0),
            train_patch=column(data.train_targets, 1),
            val_x=images(data.val_inputs),
            val_y=column(data.val_targets, 0),
            val_target=column(data.val_targets, 1)[:, 0],
            val_patch=column(data.val_targets, 2)[:, 0],
        )

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def task_rows(self, tasks: Sequence[str]) -> torch.Tensor:
        """Target-row index [M] for each member's task name."""
        lookup = {t: i for i, t in enumerate(self.tasks)}
        return torch.tensor([lookup[t] for t in tasks], dtype=torch.long, device=self.device)

    def batch(self, images: torch.Tensor, task_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One mini-batch per member: images [M, B, 1, H, W] (each member's task's trigger stamped
        where its targets say) and labels [M, B] of the training images `images` [M, B]."""
        x = self.train_x[images]  # [M, B, 1, H, W]
        y = self.train_y[task_rows[:, None], images]  # [M, B]
        return _stamped(x, self.train_patch[task_rows[:, None], images]), y

    @torch.no_grad()
    def evaluate(
        self, population: FuncPopulation, params: torch.Tensor, task_rows: torch.Tensor, chunk: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy and clean accuracy per network [M] on the validation images, `chunk`
        images per pass (the training batch, so evaluating needs no more memory than a step)."""
        loss, correct = self._passes(population, params, self.val_x, self.val_y[task_rows], chunk)
        n = float(self.val_x.shape[0])
        return (loss / n).float(), (correct / n).float()

    @torch.no_grad()
    def metrics(
        self, population: FuncPopulation, params: torch.Tensor, task_rows: torch.Tensor, chunk: int
    ) -> dict[str, torch.Tensor]:
        """`attack_success_rate` [M]: the fraction of validation images not of the attack's target
        class that each network classifies as the target once its task's trigger is stamped on."""
        target, patch = self.val_target[task_rows], self.val_patch[task_rows]  # [M]
        m = params.shape[0]
        keep = self.val_y[task_rows] != target[:, None]  # [M, Nv]
        x = _stamped(self.val_x.unsqueeze(0).expand(m, *self.val_x.shape), patch[:, None].expand_as(keep))
        labels = target[:, None].expand_as(keep)
        hits = torch.zeros(m, dtype=torch.float64, device=params.device)
        for start in range(0, x.shape[1], chunk):
            part = slice(start, start + chunk)
            predicted = population.forward(params, x[:, part]).argmax(-1)  # [M, b]
            hits += ((predicted == labels[:, part]) & keep[:, part]).sum(1).double()
        return {"attack_success_rate": (hits / keep.sum(1).clamp(min=1).double()).float()}

    def _passes(
        self, population: FuncPopulation, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor, chunk: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct count per network over shared images `x` [N, ...], labels `y` [M, N]."""
        m = params.shape[0]
        loss = torch.zeros(m, dtype=torch.float64, device=params.device)
        correct = torch.zeros_like(loss)
        for start in range(0, x.shape[0], chunk):
            xs = x[start : start + chunk]
            part_loss, part_correct = population.loss_and_correct(
                params, xs.unsqueeze(0).expand(m, *xs.shape), y[:, start : start + chunk]
            )
            loss += part_loss.double()
            correct += part_correct.double()
        return loss, correct


def _stamped(x: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    """Images `x` [M, B, 1, H, W] with the trigger (the bottom-right `patch` [M, B] square at full
    intensity) where `patch` > 0; a new tensor."""
    h, w = x.shape[-2:]
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    size = patch[..., None, None, None]  # [M, B, 1, 1, 1]
    mask = (rows[:, None] >= h - size) & (cols[None, :] >= w - size)  # [M, B, 1, H, W]
    return torch.where(mask, torch.ones_like(x), x)
