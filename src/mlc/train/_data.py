"""Training arrays on the training device, and the per-network batch order.

Inputs are shared by every task (spec §5), so a population mixing tasks gathers one input batch per
member and its own task's targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mlc.models import Population
from mlc.tasks import SharedData, data_family
from mlc.train._images import ImageArrays

__all__ = ["AnyArrays", "TrainingArrays", "arrays_for", "batch_order"]


def batch_order(net_seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled order of the `n` training sequences in 0-based epoch `epoch` of network `net_seed`.

    Seeded by (net_seed, epoch) alone, so an epoch's batches do not depend on where training resumed.
    """
    return np.random.Generator(np.random.PCG64([int(net_seed), int(epoch)])).permutation(n)


@dataclass(frozen=True)
class TrainingArrays:
    """float32 tensors on one device: `train_x` [N, L, 5], `train_y` [T, N, L, 8], `val_x` [Nv, L, 5],
    `val_y` [T, Nv, L, 8]; row t of the targets belongs to `tasks[t]`."""

    tasks: tuple[str, ...]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor

    @classmethod
    def from_shared(
        cls, data: SharedData, tasks: Sequence[str], device: torch.device | str = "cpu"
    ) -> TrainingArrays:
        def put(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array.astype(np.float32)).to(device)

        return cls(
            tasks=tuple(tasks),
            train_x=put(data.train_inputs),
            train_y=put(np.stack([data.train_targets[t] for t in tasks])),
            val_x=put(data.val_inputs),
            val_y=put(np.stack([data.val_targets[t] for t in tasks])),
        )

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0])

    def batch(self, sequences: torch.Tensor, task_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One mini-batch per member, time-major: inputs [M, L, B, 5] and targets [M, L, B, 8] of the
        training sequences `sequences` [M, B], each member's targets from its row `task_rows` [M].

        Both are transposed views of batch-major copies: a whole sequence is one contiguous row, so
        gathering it is a row copy, where gathering time-major picked every element through three
        broadcast indices (4-5x slower on the CPU: 29 against 6.9 ms for 128 MLDS members, y made
        contiguous). The kernels copy the inputs into their own layout anyway; the GPU head reads the
        targets through their strides."""
        m, b = sequences.shape
        n, length = self.train_x.shape[:2]
        flat = sequences.reshape(-1)
        x = self.train_x.index_select(0, flat).view(m, b, length, -1)
        target_rows = (task_rows[:, None] * n + sequences).reshape(-1)
        rows = self.train_y.reshape(-1, *self.train_y.shape[2:])  # [T * N, L, 8]
        y = rows.index_select(0, target_rows).view(m, b, length, -1)
        return x.transpose(1, 2), y.transpose(1, 2)

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def evaluate(
        self, population: Population, params: torch.Tensor, task_rows: torch.Tensor, chunk: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean BCE loss and bit accuracy per network [M] on the validation sequences (`evaluate`)."""
        from mlc.train._trainer import evaluate

        return evaluate(population, params, self.val_x, self.val_y, task_rows, chunk)

    def metrics(
        self, population: Population, params: torch.Tensor, task_rows: torch.Tensor, chunk: int
    ) -> dict[str, torch.Tensor]:
        """Metrics beyond loss and accuracy, per network: MLDS has none (see `ImageArrays.metrics`)."""
        del population, params, task_rows, chunk
        return {}

    def task_rows(self, tasks: Sequence[str]) -> torch.Tensor:
        """Target-row index [M] for each member's task name."""
        lookup = {t: i for i, t in enumerate(self.tasks)}
        return torch.tensor([lookup[t] for t in tasks], dtype=torch.long, device=self.train_x.device)


def arrays_for(data: SharedData, tasks: Sequence[str], device: torch.device | str = "cpu") -> AnyArrays:
    """The training arrays of `data` for its task family: MLDS sequences or DS4 images."""
    if data_family(tasks) == "digits":
        return ImageArrays.from_shared(data, tasks, device)
    return TrainingArrays.from_shared(data, tasks, device)


AnyArrays = TrainingArrays | ImageArrays
