"""The local executor: the embedded default. The coordinator service and the worker runtime in one
process, over a SQLite database in the workdir.

It drives the same service as the volunteer server (lease -> train -> report -> validate ->
assimilate) with the same runtime as `mlc worker`, so a local run exercises the whole pipeline, and an
interrupted run resumes from the database and the runtime's checkpoints: re-running it re-leases its
own unfinished units, continues them from their last checkpoint (a few epochs lost at most), and never
repeats assimilated work.

A workdir is self-contained and used by one run at a time (a lock file): it holds one experiment,
its database and its dataset, so it can be moved or copied whole, and a run that finds leases of an
earlier local run (interrupted under another path or host name) takes them over.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import filelock
import torch
from sqlalchemy import Engine

from mlc._storage import writable_dir
from mlc.coordinator import (
    CoordinatorService,
    Experiment,
    ExperimentStatus,
    connect,
    create_experiment,
    experiment_status,
    list_experiments,
    move_dataset,
    orphaned_dataset,
    reconcile,
    sqlite_url,
    take_over_leases,
)
from mlc.errors import StateError, StoreBusy
from mlc.work import EpochProgress, ExperimentConfig, WorkerRuntime, check_resources, host_id

__all__ = [
    "CHECKPOINT_DIR",
    "DATABASE_FILE",
    "DATASET_DIR",
    "LocalExecutor",
    "ProgressSink",
    "RunSummary",
    "run_in_progress",
]

DATABASE_FILE = "mlc.db"  # in the workdir, as is the dataset
DATASET_DIR = "dataset"
CHECKPOINT_DIR = "checkpoints"  # the runtime's checkpoints inside work units

_LEASE_SECONDS = 24 * 3600.0  # the local owner re-leases its own units on restart anyway
_OWNER_PREFIX = "local:"  # lease owners of local runs: f"local:{host}:{workdir}"
_LOCK_FILE = "mlc.lock"  # held by the run using a workdir
_LOCK_WAIT_S = 2.0  # long enough for `mlc status`'s look at the lock to end


class ProgressSink(Protocol):
    """What the executor tells a progress display (the CLI's; tests pass None): the experiment's
    status when training starts and after each batch is assimilated, and every epoch of a batch."""

    def started(self, status: ExperimentStatus, population_size: int) -> None: ...

    def epoch(self, progress: EpochProgress) -> None: ...

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
    repaired: tuple[str, ...] = ()  # where the database and the dataset disagreed, and what was done


class LocalExecutor:
    """Runs one experiment to completion in `workdir` (database `mlc.db`, dataset `dataset/`,
    checkpoints `checkpoints/`).

    `device` is a torch.device or "auto", "cpu", "cuda[:n]"; `population_size` is the networks
    trained at once (None: as many as the free memory holds); `threads` the CPU threads that train
    (None: all usable cores); `progress` receives the run's events (the CLI's display);
    `checkpoint_seconds` is how often the state inside a work unit is saved, which bounds what an
    interruption loses. Everything is checked here, before `run` writes anything to the workdir.
    """

    def __init__(
        self,
        workdir: Path | str,
        device: torch.device | str = "auto",
        population_size: int | None = None,
        progress: ProgressSink | None = None,
        threads: int | None = None,
        checkpoint_seconds: float = 15.0,
    ) -> None:
        self.workdir = Path(workdir)
        checkpoints = self.workdir / CHECKPOINT_DIR
        self.runtime = WorkerRuntime(
            device,
            threads=threads,
            population_size=population_size,
            checkpoint_dir=checkpoints,
            checkpoint_seconds=checkpoint_seconds,
        )
        self.progress = progress

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def database_path(self) -> Path:
        return self.workdir / DATABASE_FILE

    @property
    def dataset_dir(self) -> Path:
        return self.workdir / DATASET_DIR

    def run(self, config: ExperimentConfig) -> RunSummary:
        staged = self.dataset_dir / "staging"
        n_stored = sum(1 for _ in staged.glob("*.safetensors")) if staged.is_dir() else 0
        check_resources(config, self.workdir, n_stored=n_stored)  # before anything is allocated
        self.runtime.prepare()
        started = time.perf_counter()
        with self._alone_in_workdir():
            orphaned = orphaned_dataset(self.dataset_dir, self.database_path)
            if orphaned:  # before connect() makes a new, empty database
                raise StateError(orphaned)
            engine = connect(sqlite_url(self.database_path))
            try:
                service = CoordinatorService(engine)
                exp, created = self._experiment(engine, config)
                owner = f"{_OWNER_PREFIX}{host_id()}:{self.workdir.resolve()}"
                take_over_leases(engine, exp.id, _OWNER_PREFIX, owner, _LEASE_SECONDS)
                repaired = self._reconcile(engine, exp)
                writer = service.writer(exp.name)
                service.drain()  # results stored before an interruption
                status = experiment_status(engine, exp.id)
                size = self.runtime.capacity(config, status.n_training)
                if self.progress:
                    self.progress.started(status, size)
                self._loop(service, exp, size, owner)
                status = experiment_status(engine, exp.id)  # its dataset finalized by the last drain
            finally:
                engine.dispose()
        return RunSummary(
            exp.name,
            self.dataset_dir,
            status,
            not created,
            time.perf_counter() - started,
            status.complete and writer.finalized,
            size,
            str(self.device),
            tuple(repaired),
        )

    @contextmanager
    def _alone_in_workdir(self) -> Iterator[None]:
        """Make the workdir and hold its lock file for the run: a second run there would lease the same
        units under the same owner name and train them twice."""
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, no permission, a read-only or virtual file system
            raise StateError(f"cannot use {self.workdir} as the workdir: {exc.strerror or exc}") from exc
        writable_dir(self.workdir)  # else the lock file and SQLite fail, each in its own words
        lock = filelock.FileLock(self.workdir / _LOCK_FILE)
        try:
            lock.acquire(timeout=_LOCK_WAIT_S)
        except filelock.Timeout:
            raise StoreBusy(
                f"another mlc run is using {self.workdir}; wait for it to finish (`mlc status --workdir "
                f"{self.workdir}` shows its progress) or stop it"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _experiment(self, engine: Engine, config: ExperimentConfig) -> tuple[Experiment, bool]:
        """The workdir's one experiment, created if new or grown if asked for with more networks per
        task, with its dataset where the workdir is now."""
        names = [e.name for e in list_experiments(engine)]
        others = [name for name in names if name != config.name]
        if others and config.name not in names:
            raise StateError(
                f"{self.workdir} holds experiment {others[0]!r}; run {config.name!r} in another --workdir"
            )
        here = self.dataset_dir.resolve()
        exp, created = create_experiment(engine, config, here, grow=True)  # the writer reopens grown
        if exp.dataset_dir != here:  # the workdir was moved or copied: its own dataset is the one
            move_dataset(engine, exp.id, here)
            exp = dataclasses.replace(exp, dataset_dir=here)
        return exp, created

    def _reconcile(self, engine: Engine, exp: Experiment) -> list[str]:
        """Make the database and the dataset agree before training (see `mlc.coordinator.reconcile`);
        refused where the dataset lacks networks the database says it stored: a deleted or replaced
        dataset would otherwise be recreated and finalized without them, and they would never be
        trained again."""
        try:
            return reconcile(engine, exp, self.dataset_dir)
        except StateError as exc:
            raise StateError(f"{exc} (the database is {self.database_path})") from None

    def _loop(self, service: CoordinatorService, exp: Experiment, size: int, owner: str) -> None:
        while True:
            service.transition_pass()
            units = service.lease(owner, size, _LEASE_SECONDS, experiment_id=exp.id)
            if not units:
                return
            on_epoch = self.progress.epoch if self.progress else None
            for result in self.runtime.train(units, on_epoch=on_epoch):
                service.report(result.wu_id, result.to_bytes(), owner)
            self.runtime.forget(units)  # the results are in the database: their checkpoints can go
            service.drain()
            if self.progress:
                self.progress.assimilated(experiment_status(service.engine, exp.id))


def run_in_progress(workdir: Path) -> bool | None:
    """Whether an `mlc run` is using `workdir` now (holds its lock), for `mlc status` to say whether
    networks still to train are training or waiting for the run to be resumed; None where the lock
    cannot be looked at (a read-only workdir, another user's lock file)."""
    path = Path(workdir) / _LOCK_FILE
    if not path.exists():
        return False
    lock = filelock.FileLock(path)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    except OSError:
        return None
    lock.release()
    return False
