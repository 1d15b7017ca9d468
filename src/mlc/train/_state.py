"""Resumable training state of a population: everything needed to continue exactly.

Rows are networks. Continuing from a saved state gives bit-identical weights to never having
stopped, because the batch order of epoch e depends only on (net_seed, e) and Adam's state is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

__all__ = ["EpochHistory", "PopulationState"]


@dataclass
class PopulationState:
    """params, exp_avg, exp_avg_sq [M, P] float32; step, epoch [M] int64; stopped, converged [M] bool.

    `step` counts Adam updates, `epoch` finished epochs; a stopped network is frozen.
    """

    params: torch.Tensor
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    step: torch.Tensor
    epoch: torch.Tensor
    stopped: torch.Tensor
    converged: torch.Tensor

    @classmethod
    def fresh(cls, params: torch.Tensor) -> PopulationState:
        m = params.shape[0]
        return cls(
            params=params.float().contiguous(),
            exp_avg=torch.zeros_like(params),
            exp_avg_sq=torch.zeros_like(params),
            step=torch.zeros(m, dtype=torch.int64),
            epoch=torch.zeros(m, dtype=torch.int64),
            stopped=torch.zeros(m, dtype=torch.bool),
            converged=torch.zeros(m, dtype=torch.bool),
        )

    @property
    def n_members(self) -> int:
        return int(self.params.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        """Name -> CPU tensor, the form the work layer serialises."""
        return {k: getattr(self, k).detach().cpu().contiguous() for k in _FIELDS}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> PopulationState:
        return cls(**{k: tensors[k] for k in _FIELDS})

    def to(self, device: torch.device | str) -> PopulationState:
        return replace(self, **{k: getattr(self, k).to(device) for k in _FIELDS})

    def cpu_copy(self) -> PopulationState:
        """A copy on the CPU that later training of this state does not change (a snapshot)."""
        return replace(self, **{k: getattr(self, k).detach().to("cpu", copy=True) for k in _FIELDS})

    def select(self, rows: torch.Tensor | list[int]) -> PopulationState:
        """The sub-population of the given row indices (copies)."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        return PopulationState(
            **{k: getattr(self, k)[idx.to(getattr(self, k).device)] for k in _FIELDS}  # indexing copies
        )

    @classmethod
    def concat(cls, states: list[PopulationState]) -> PopulationState:
        return cls(**{k: torch.cat([getattr(s, k) for s in states]) for k in _FIELDS})


_FIELDS = tuple(f.name for f in fields(PopulationState))


@dataclass
class EpochHistory:
    """Per-epoch metrics of one training call: [M, E] float32 arrays, NaN where a member did not run
    that epoch (it had stopped); `n_epochs` [M] how many columns hold values (always a prefix). Column 0
    is each member's first epoch of the call, whatever epoch it had reached before."""

    train_loss: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    n_epochs: np.ndarray

    def member(self, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = int(self.n_epochs[m])
        return self.train_loss[m, :n], self.val_loss[m, :n], self.val_accuracy[m, :n]
