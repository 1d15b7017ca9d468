"""Fixtures for the store tests: tiny shared data and fake finished networks of the right size."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlc.models
from mlc.store import DatasetWriter
from mlc.tasks import DataSpec, SharedData, get, make_shared_data
from mlc.work._records import FinishedNetwork

TASKS = ("SingleDirectMachine", "ParityModified")
DATASET = "store-test"
CONFIG: dict[str, Any] = {"preset": "mlds-ds1", "data": {"seed": 1},
                          "training": {"lr": 0.001, "batch_size": 4, "max_epochs": 6,
                                       "epochs_per_wu": 3, "stop_val_loss": 0.01}}

MakeNet = Callable[..., FinishedNetwork]


@pytest.fixture(scope="session")
def shared_data() -> SharedData:
    spec = DataSpec(seed=1, n_train=16, n_val=8, length=10)
    return make_shared_data(spec, [get(t) for t in TASKS])


@pytest.fixture(scope="session")
def make_net() -> MakeNet:
    """`make_net(task, index, **overrides)`: a valid record; its arrays depend on (task, index)."""
    layout_id = mlc.models.layout("mlds-gru").layout_id

    def make(task: str, index: int, /, **overrides: Any) -> FinishedNetwork:
        rng = np.random.default_rng([zlib.crc32(task.encode()), index])
        epochs = int(rng.integers(1, 6))
        fields: dict[str, Any] = dict(
            net_id=f"{task}-{index:06d}", dataset=DATASET, task=task, index=index,
            net_seed=1000 + index, data_seed=1, model="mlds-gru", layout_id=layout_id,
            hyperparameters={"lr": 0.001, "batch_size": 4, "max_epochs": 6},
            weights=rng.standard_normal(4364).astype(np.float32),
            train_loss=rng.random(epochs).astype(np.float32),
            val_loss=rng.random(epochs).astype(np.float32),
            val_accuracy=rng.random(epochs).astype(np.float32),
            converged=index % 2 == 0, wall_time_s=0.25 * (index + 1), device_kind="cpu",
            device_name="test-cpu", torch_version="2.13.0", platform="linux-x86_64",
            host_id="host-a", work_units=tuple(f"wu-{task}-{index}-{k}" for k in range(2)),
        )
        fields.update(overrides)
        return FinishedNetwork(**fields)

    return make


@pytest.fixture
def new_writer(tmp_path: Path, shared_data: SharedData) -> Callable[..., DatasetWriter]:
    def create(root: Path | None = None, **overrides: Any) -> DatasetWriter:
        args: dict[str, Any] = dict(name=DATASET, preset="mlds-ds1", config=CONFIG,
                                    model="mlds-gru", data=shared_data)
        args.update(overrides)
        return DatasetWriter.create(root or tmp_path / "ds", **args)

    return create


@pytest.fixture
def finished(new_writer: Callable[..., DatasetWriter], make_net: MakeNet) -> Path:
    """A finalized dataset with 3 networks per task."""
    writer = new_writer()
    for task in TASKS:
        for index in range(3):
            writer.add(make_net(task, index))
    return writer.finalize()
