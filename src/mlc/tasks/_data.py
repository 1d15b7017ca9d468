"""The shared training data of an experiment (spec §5).

One set of command sequences is drawn per experiment and shared by every task, so a DS1 machine and its
DS2 twin see identical inputs and differ only in their targets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mlc.errors import ConfigError
from mlc.tasks._encoding import N_INPUT_BITS
from mlc.tasks._registry import Task

__all__ = ["DataSpec", "SharedData", "array_sha256", "draw_inputs", "make_shared_data"]


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's C-order bytes (uint8 arrays have no byte-order question)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@dataclass(frozen=True)
class DataSpec:
    """How an experiment's inputs are drawn: everything needed to redraw them bit for bit."""

    seed: int
    n_train: int = 1000
    n_val: int = 200
    length: int = 100

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be at least 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"data.seed must be non-negative, got {self.seed}")

    def to_dict(self) -> dict[str, int]:
        """As configs, work units and dataset manifests store it (compared byte for byte as JSON)."""
        return {"seed": self.seed, "n_train": self.n_train, "n_val": self.n_val, "length": self.length}


def draw_inputs(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """Training then validation commands, uint8 `[n_train, L, 5]` and `[n_val, L, 5]`, every bit a fair
    coin from `Generator(PCG64(seed))` (training drawn first)."""
    rng = np.random.Generator(np.random.PCG64(spec.seed))
    train = rng.integers(0, 2, size=(spec.n_train, spec.length, N_INPUT_BITS), dtype=np.uint8)
    val = rng.integers(0, 2, size=(spec.n_val, spec.length, N_INPUT_BITS), dtype=np.uint8)
    return train, val


@dataclass(frozen=True)
class SharedData:
    """Inputs shared by all tasks and each task's targets.

    `train_inputs` [N, L, 5], `val_inputs` [Nv, L, 5]; `train_targets[task]` [N, L, 8],
    `val_targets[task]` [Nv, L, 8]; all uint8.
    """

    spec: DataSpec
    train_inputs: np.ndarray
    val_inputs: np.ndarray
    train_targets: dict[str, np.ndarray]
    val_targets: dict[str, np.ndarray]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.train_targets)

    def hashes(self) -> dict[str, str]:
        """SHA-256 of every array, keyed like `train/inputs`, `val/targets/<task>`."""
        out = {"train/inputs": array_sha256(self.train_inputs), "val/inputs": array_sha256(self.val_inputs)}
        for task in self.tasks:
            out[f"train/targets/{task}"] = array_sha256(self.train_targets[task])
            out[f"val/targets/{task}"] = array_sha256(self.val_targets[task])
        return out

    def digest(self) -> str:
        """One hash over all arrays, for a work unit to name the data it was trained on."""
        h = hashlib.sha256()
        for key, value in sorted(self.hashes().items()):
            h.update(f"{key}={value}\n".encode())
        return h.hexdigest()


def make_shared_data(spec: DataSpec, tasks: Iterable[Task]) -> SharedData:
    """Draw the inputs once and simulate every task on them."""
    train, val = draw_inputs(spec)
    tasks = list(tasks)
    return SharedData(
        spec=spec,
        train_inputs=train,
        val_inputs=val,
        train_targets={t.name: t.simulate(train) for t in tasks},
        val_targets={t.name: t.simulate(val) for t in tasks},
    )
