"""The server's own copy of each experiment's data and model, drawn once and kept for validation."""

from __future__ import annotations

import json

import torch
from sqlalchemy import Engine

from mlc import models
from mlc.coordinator._experiments import Experiment, build_shared_data, get_experiment
from mlc.store import DatasetWriter
from mlc.tasks import SharedData
from mlc.train import AnyArrays, TriggerTargets, arrays_for, trigger_targets

__all__ = ["ServerData"]


class ServerData:
    """Experiment by name, with its shared data, CPU training arrays and population model, cached."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cache: dict[str, tuple[Experiment, SharedData, AnyArrays, models.AnyPopulation]] = {}
        self._variants: dict[tuple[str, str], models.AnyPopulation] = {}
        self._triggers: dict[str, TriggerTargets] = {}

    def _load(self, name: str) -> tuple[Experiment, SharedData, AnyArrays, models.AnyPopulation]:
        if name not in self._cache:
            exp = get_experiment(self._engine, name)
            data = build_shared_data(exp.config)
            arrays = arrays_for(data, exp.config.tasks, "cpu")
            self._cache[name] = (exp, data, arrays, models.population(exp.config.model))
        return self._cache[name]

    def experiment(self, name: str) -> Experiment:
        return self._load(name)[0]

    def shared(self, name: str) -> SharedData:
        return self._load(name)[1]

    def arrays(self, name: str) -> AnyArrays:
        return self._load(name)[2]

    def population(self, name: str, settings: dict[str, object] | None = None) -> models.AnyPopulation:
        """The experiment's model, or a sweep variant's with its model `settings` (activation, init)."""
        if settings:
            key = (name, json.dumps(settings, sort_keys=True))
            if key not in self._variants:
                self._variants[key] = models.population(self.experiment(name).config.model, settings=settings)
            return self._variants[key]
        return self._load(name)[3]

    def trigger_targets(self, name: str) -> TriggerTargets:
        """Held-out triggered data of experiment `name` and its tasks' targets on it (cached), on
        which the server measures each finished network's trojan and clean accuracy."""
        if name not in self._triggers:
            exp = self.experiment(name)
            self._triggers[name] = trigger_targets(exp.config.data, exp.config.tasks)
        return self._triggers[name]

    def replay_population(self, name: str, settings: dict[str, object] | None = None) -> models.AnyPopulation:
        """The fastest correct kernels here (first-run checked), for replaying segments: a replay
        is training, and on the kernels of a result's own class it must agree bit for bit. A sweep
        variant's model (`settings`) trains on the generic path, which has no kernels to choose."""
        from mlc.work import population_for

        if settings:
            return self.population(name, settings)
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
            layouts=exp.config.layouts,
        )
