"""The tiny experiment the coordinator tests run, and the bundle of objects one test works with."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from mlc.coordinator import Experiment, ServerData
from mlc.store import DatasetWriter
from mlc.work import ExperimentConfig, load_preset

# Two tasks, two networks each, one unit per task; 3 epochs in units of 2, so every network needs a
# first unit (2 epochs) and one continuation (1 epoch, then max_epochs stops it).
TINY = {
    "tasks": ["SingleDirectMachine", "ParityMachine"],
    "networks_per_task": 2,
    "networks_per_wu": 2,
    "epochs_per_wu": 2,
    "train.max_epochs": 3,
    "data.n_train": 32,
    "data.n_val": 8,
    "data.length": 10,
}


def tiny_config(**overrides: object) -> ExperimentConfig:
    return load_preset("mlds-smoke", {**TINY, **overrides})


@dataclass
class Setup:
    """One experiment in a database, with the server's data and a dataset writer for it."""

    engine: Engine
    exp: Experiment
    server: ServerData
    writer: DatasetWriter

    def writer_for(self, _exp: Experiment) -> DatasetWriter:
        return self.writer
