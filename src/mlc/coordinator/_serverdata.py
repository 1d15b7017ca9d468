"""The server's own copy of each experiment's data and model, drawn once and kept for validation."""

from __future__ import annotations

import torch
from sqlalchemy import Engine

from mlc import models
from mlc.coordinator._experiments import Experiment, build_shared_data, get_experiment
from mlc.store import DatasetWriter
from mlc.tasks import SharedData
from mlc.train import TrainingArrays, TriggerTargets, trigger_targets

__all__ = ["ServerData"]


class ServerData:
    """Experiment by name, with its shared data, CPU training arrays and population model, cached."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cache: dict[str, tuple[Experiment, SharedData, TrainingArrays, models.Population]] = {}
        self._triggers: dict[str, TriggerTargets] = {}

    def _load(self, name: str) -> tuple[Experiment, SharedData, TrainingArrays, models.Population]:
        if name not in self._cache:
            exp = get_experiment(self._engine, name)
            data = build_shared_data(exp.config)
            arrays = TrainingArrays.from_shared(data, exp.config.tasks, "cpu")
            self._cache[name] = (exp, data, arrays, models.population(exp.config.model))
        return self._cache[name]

    def experiment(self, name: str) -> Experiment:
        return self._load(name)[0]

    def shared(self, name: str) -> SharedData:
        return self._load(name)[1]

    def arrays(self, name: str) -> TrainingArrays:
        return self._load(name)[2]

    def population(self, name: str) -> models.Population:
        return self._load(name)[3]

    def trigger_targets(self, name: str) -> TriggerTargets:
        """Held-out triggered data of experiment `name` and its tasks' targets on it (cached), on
        which the server measures each finished network's trojan and clean accuracy."""
        if name not in self._triggers:
            exp = self.experiment(name)
            self._triggers[name] = trigger_targets(exp.config.data, exp.config.tasks)
        return self._triggers[name]

    def replay_population(self, name: str) -> models.Population:
        """The fastest correct kernels here (first-run checked), for replaying segments: a replay
        is training, and on the kernels of a result's own class it must agree bit for bit."""
        from mlc.work import population_for

        return population_for(self.experiment(name).config.model, torch.device("cpu"))

    def dataset_writer(self, name: str) -> DatasetWriter:
        """The writer of experiment `name`'s dataset (created, or reopened where it exists)."""
        exp = self.experiment(name)
        return DatasetWriter.create(
            exp.dataset_dir,
            name=exp.name,
            preset=exp.config.name,
            config=exp.config.to_dict(),
            model=exp.config.model,
            data=self.shared(name),
            spec_version=exp.config.spec_version,
        )
