"""The record of one finished network: what the assimilator hands to the dataset store.

A network is finished when its stop rule fired (converged, or max_epochs reached). The record holds
everything spec §7 says is kept per network; the store decides how it lies on disk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FinishedNetwork", "weights_sha256"]


def weights_sha256(weights: np.ndarray) -> str:
    """SHA-256 of the little-endian float32 bytes of a flat weight vector."""
    return hashlib.sha256(np.ascontiguousarray(weights, dtype="<f4").tobytes()).hexdigest()


@dataclass(frozen=True)
class FinishedNetwork:
    """One trained network with its full training record.

    Arrays: `weights` [n_params] float32 in the model's layout order; `train_loss`, `val_loss`,
    `val_accuracy` [epochs] float32, one entry per epoch run (epoch 1 first).
    """

    net_id: str  # unique within the dataset, e.g. "SingleDirectMachine-000003"
    dataset: str  # dataset (experiment) name
    task: str
    index: int  # index of the network within its task, 0-based
    net_seed: int
    data_seed: int
    model: str  # e.g. "mlds-gru"
    layout_id: str
    hyperparameters: dict[str, Any]
    weights: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    converged: bool
    wall_time_s: float  # training time summed over its work units
    device_kind: str  # "cpu" | "cuda"
    device_name: str
    torch_version: str
    platform: str
    host_id: str
    work_units: tuple[str, ...]  # ids of the work units it went through, in order
    extra: dict[str, Any] = field(default_factory=dict)
    # per work unit, as the coordinator checked it: who trained it ("local", "ray", "host:ID") and
    # how many of its segments the validator replayed ("r/n"); confirmed: every unit was trained by
    # the project's own executor or replayed whole by the server
    trained_by: tuple[str, ...] = ()
    replayed_segments: tuple[str, ...] = ()
    confirmed: bool = False
    # measured by the server on held-out triggered data (`mlc.train.trigger_accuracies`), never taken
    # from a worker; None for a task without a trojan twin (DS3)
    trojan_accuracy: float | None = None
    clean_accuracy_triggered: float | None = None

    @property
    def epochs(self) -> int:
        return int(self.val_loss.shape[0])

    @property
    def weights_sha256(self) -> str:
        return weights_sha256(self.weights)
