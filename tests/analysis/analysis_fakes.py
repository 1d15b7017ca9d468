"""An in-memory stand-in for `mlc.dataset.open`'s Dataset, with synthetic networks.

The layout mirrors mlds-gru's (spec §6; `test_fake_layout_matches_mlds_gru` checks it against
`mlc.models`), so the weight statistics see the real tensor shapes. Each task's networks are
Gaussian noise plus a task-specific shift on a few coordinates: a planted signal of known strength.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FakeEntry:
    name: str
    shape: tuple[int, ...]
    offset: int


@dataclass(frozen=True)
class FakeLayout:
    entries: tuple[FakeEntry, ...]
    layout_id: str = "mlds-gru/fake"

    @property
    def n_params(self) -> int:
        last = self.entries[-1]
        return last.offset + math.prod(last.shape)


def mlds_gru_layout() -> FakeLayout:
    """The mlds-gru tensors in state_dict order: 4 GRU layers (5 -> 12), then 12-12-24-12-8."""
    shapes: list[tuple[str, tuple[int, ...]]] = []
    for layer in range(4):
        n_in = 5 if layer == 0 else 12
        shapes += [(f"gru.weight_ih_l{layer}", (36, n_in)), (f"gru.weight_hh_l{layer}", (36, 12)),
                   (f"gru.bias_ih_l{layer}", (36,)), (f"gru.bias_hh_l{layer}", (36,))]
    for i, (n_in, n_out) in enumerate([(12, 12), (12, 24), (24, 12), (12, 8)], start=1):
        shapes += [(f"fc{i}.weight", (n_out, n_in)), (f"fc{i}.bias", (n_out,))]
    entries, offset = [], 0
    for name, shape in shapes:
        entries.append(FakeEntry(name, shape, offset))
        offset += math.prod(shape)
    return FakeLayout(tuple(entries))


@dataclass
class FakeDataset:
    """Satisfies `mlc.analysis.DatasetLike`."""

    networks: pd.DataFrame
    _weights: np.ndarray
    layout: FakeLayout = field(default_factory=mlds_gru_layout)
    manifest: dict[str, Any] = field(default_factory=lambda: {"name": "fake", "preset": "fake"})

    @property
    def layouts(self) -> dict[str, FakeLayout]:
        return {self.layout.layout_id: self.layout}

    @property
    def history(self) -> pd.DataFrame:
        """Per network and epoch, losses falling towards its final ones (the synthetic curve
        carries no task signal)."""
        rows = []
        for net in self.networks.itertuples():
            for epoch in range(1, net.epochs + 1):
                share = epoch / net.epochs
                rows.append({"net_id": net.net_id, "epoch": epoch,
                             "train_loss": net.final_train_loss / share,
                             "val_loss": net.final_val_loss / share, "val_accuracy": share})
        return pd.DataFrame(rows)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.networks["task"].unique())

    def weights(self, task: str | None = None,
                net_ids: Sequence[str] | None = None) -> np.ndarray:
        rows = self.networks if task is None else self.networks[self.networks["task"] == task]
        if net_ids is not None:
            position = pd.Series(np.arange(len(self.networks)), index=self.networks["net_id"])
            return self._weights[position.loc[list(net_ids)].to_numpy()]
        return self._weights[rows.index.to_numpy()]


def synthetic_dataset(counts: dict[tuple[str, str], int], *, name: str = "fake",
                      signal: float = 1.5, n_signal: int = 40, device_signal: float = 1.0,
                      seed: int = 0) -> FakeDataset:
    """Networks per (task, device kind) as `counts` says. Weights are N(0, 1) plus, per task, a
    shift of `signal` on `n_signal` task-specific coordinates (and `device_signal` on shared ones
    for cuda networks). Final losses are independent of the task: the loss baseline has nothing
    to find."""
    layout = mlds_gru_layout()
    rng = np.random.default_rng(seed)
    rows, blocks = [], []
    for (task, kind), n in counts.items():
        task_rng = np.random.default_rng(zlib.crc32(task.encode()))
        shift = np.zeros(layout.n_params, dtype=np.float32)
        shift[task_rng.choice(layout.n_params, n_signal, replace=False)] = signal
        if kind == "cuda":
            shift[:n_signal] += device_signal
        blocks.append(rng.normal(size=(n, layout.n_params)).astype(np.float32) + shift)
        for i in range(n):
            rows.append({"net_id": f"{task}-{kind}-{i:06d}", "task": task, "index": i,
                         "net_seed": int(rng.integers(2**31)), "converged": bool(i % 4),
                         "epochs": int(rng.integers(10, 100)),
                         "final_train_loss": float(rng.lognormal(-4, 1)),
                         "final_val_loss": float(rng.lognormal(-4, 1)),
                         "final_val_accuracy": 1.0, "device_kind": kind,
                         "device_name": "fake " + kind})
    weights = np.concatenate(blocks)
    networks = pd.DataFrame(rows).assign(
        weights_sha256=[hashlib.sha256(row.tobytes()).hexdigest() for row in weights])
    return FakeDataset(networks, weights, layout, {"name": name, "preset": "fake"})
