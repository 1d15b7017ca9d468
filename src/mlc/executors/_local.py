"""The local executor: the embedded default. Coordinator, worker and dataset in one process.

It drives the same state machine as the volunteer server (lease -> train -> report -> validate ->
assimilate), so a local run exercises the whole pipeline, and an interrupted run resumes from the
database: re-running it re-leases its own unfinished units and never repeats assimilated work.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from sqlalchemy import Engine

from mlc import models
from mlc.coordinator import (
    Experiment,
    ExperimentStatus,
    ServerData,
    apply_transitions,
    assimilate_valid,
    connect,
    create_experiment,
    experiment_status,
    lease_work,
    report_result,
    sqlite_url,
    validate_pending,
)
from mlc.store import DatasetWriter
from mlc.train import EpochReport, bytes_per_network, choose_population_size, keep_freed_memory
from mlc.work import DataCache, ExperimentConfig, host_id, run_work_units

__all__ = ["LocalExecutor", "ProgressSink", "RunSummary"]

_LEASE_SECONDS = 24 * 3600.0  # the local owner re-leases its own units on restart anyway


class ProgressSink(Protocol):
    """What the executor tells a progress display (the CLI's is rich; tests pass None)."""

    def started(self, status: ExperimentStatus, population_size: int) -> None: ...

    def epoch(self, report: EpochReport, n_in_batch: int) -> None: ...

    def assimilated(self, status: ExperimentStatus) -> None: ...


@dataclass(frozen=True)
class RunSummary:
    experiment: str
    dataset_dir: Path
    status: ExperimentStatus
    resumed: bool
    wall_time_s: float
    finalized: bool
    population_size: int
    device: str


class LocalExecutor:
    """Runs one experiment to completion in `workdir` (database `mlc.db`, dataset `dataset/`)."""

    def __init__(
        self,
        workdir: Path,
        device: torch.device,
        population_size: int | None = None,
        progress: ProgressSink | None = None,
        threads: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.device = device
        self.population_size = population_size
        self.progress = progress
        self.threads = threads

    @property
    def database_path(self) -> Path:
        return self.workdir / "mlc.db"

    def open_engine(self) -> Engine:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return connect(sqlite_url(self.database_path))

    def run(self, config: ExperimentConfig) -> RunSummary:
        models.set_training_threads(self.threads)
        keep_freed_memory()
        started = time.perf_counter()
        engine = self.open_engine()
        try:
            exp, created = create_experiment(engine, config, self.workdir / "dataset")
            server = ServerData(engine)
            writer = server.dataset_writer(exp.name)
            size = self.population_size or self._auto_size(config)
            self._drain(engine, server, writer)  # results stored before an interruption
            if self.progress:
                self.progress.started(experiment_status(engine, exp.id), size)
            self._loop(engine, exp, server, writer, size)
            status = experiment_status(engine, exp.id)
            if status.complete:
                writer.finalize()
        finally:
            engine.dispose()
        return RunSummary(
            exp.name,
            exp.dataset_dir,
            status,
            not created,
            time.perf_counter() - started,
            status.complete,
            size,
            str(self.device),
        )

    def _auto_size(self, config: ExperimentConfig) -> int:
        """From the memory of the kernels that will train (the first-run check is cached, so
        `run_work_units` gets the same population without checking again)."""
        population = models.population_for(config.model, self.device)
        data = config.data  # evaluation passes are a whole batch even when training's are smaller
        per = bytes_per_network(population, config.train.batch_size, data.length, data.n_train)
        return choose_population_size(self.device, per, cpu_threads=population.threads)

    def _drain(self, engine: Engine, server: ServerData, writer: DatasetWriter) -> None:
        validate_pending(engine, server)
        assimilate_valid(engine, server, lambda _exp: writer)

    def _loop(
        self, engine: Engine, exp: Experiment, server: ServerData, writer: DatasetWriter, size: int
    ) -> None:
        owner = f"local:{host_id()}:{self.workdir.resolve()}"
        cache = DataCache()
        while True:
            apply_transitions(engine)
            units = lease_work(engine, owner, size, _LEASE_SECONDS, experiment_id=exp.id)
            if not units:
                return
            n_in_batch = sum(len(u.spec.members) for u in units)
            on_epoch = (
                functools.partial(self.progress.epoch, n_in_batch=n_in_batch) if self.progress else None
            )
            for result in run_work_units(units, self.device, cache=cache, on_epoch=on_epoch):
                report_result(engine, result.wu_id, result.to_bytes(), owner)
            self._drain(engine, server, writer)
            if self.progress:
                self.progress.assimilated(experiment_status(engine, exp.id))
