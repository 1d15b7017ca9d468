"""What every executor of `mlc run` shares: one experiment in a workdir, driven through the coordinator
service, whichever way its work units travel to be trained (this process, Ray tasks).

A workdir is self-contained and used by one run at a time (a lock file): it holds one experiment,
its database (`mlc.db`, SQLite) and its dataset, so it can be moved or copied whole. A run resumes
what an interrupted one left: it drains results already stored, takes over the leases of any earlier
run in the workdir (local or Ray, under another path or host name), and never repeats assimilated
work. The executors differ only in how they train the units they lease (`_train_all`).
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import filelock
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
from mlc.work import EpochProgress, ExperimentConfig, check_resources, host_id

__all__ = [
    "CHECKPOINT_DIR",
    "DATABASE_FILE",
    "DATASET_DIR",
    "ProgressSink",
    "RunSummary",
    "WorkdirExecutor",
    "run_in_progress",
]

DATABASE_FILE = "mlc.db"  # in the workdir, as is the dataset
DATASET_DIR = "dataset"
CHECKPOINT_DIR = "checkpoints"  # the local runtime's checkpoints inside work units

# lease owners of workdir runs are f"{prefix}{host}:{workdir}[...]": a run takes over all of them
_OWNER_PREFIXES = ("local:", "ray:")
_LOCK_FILE = "mlc.lock"  # held by the run using a workdir
_LOCK_WAIT_S = 2.0  # long enough for `mlc status`'s look at the lock to end


class ProgressSink(Protocol):
    """What an executor tells a progress display (the CLI's is rich; tests pass None). `epoch` comes
    only from executors that train in this process."""

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


class WorkdirExecutor(ABC):
    """Runs one experiment to completion in `workdir` (database `mlc.db`, dataset `dataset/`);
    `progress` receives the run's events. Subclasses say how leased units are trained."""

    owner_prefix: ClassVar[str]  # one of _OWNER_PREFIXES
    lease_seconds: float

    def __init__(self, workdir: Path | str, progress: ProgressSink | None = None) -> None:
        self.workdir = Path(workdir)
        self.progress = progress

    @property
    def database_path(self) -> Path:
        return self.workdir / DATABASE_FILE

    @property
    def dataset_dir(self) -> Path:
        return self.workdir / DATASET_DIR

    # -- what an executor provides --------------------------------------------------------------

    @abstractmethod
    def _session(self) -> AbstractContextManager[None]:
        """Held around the run: the trainer's process settings, a connection to a cluster."""

    @abstractmethod
    def _population_size(self, config: ExperimentConfig, n_left: int) -> int:
        """Networks trained at once (by one trainer: a Ray task, this process)."""

    @abstractmethod
    def _device_name(self) -> str:
        """Where the networks trained, in words, for the summary."""

    @abstractmethod
    def _train_all(self, service: CoordinatorService, exp: Experiment, size: int, owner: str) -> None:
        """Lease, train and report units of `exp` (as `owner`, `size` networks at a time), draining
        the results into the dataset, until none are left."""

    # -- the run ----------------------------------------------------------------------------------

    def run(self, config: ExperimentConfig) -> RunSummary:
        staged = self.dataset_dir / "staging"
        n_stored = sum(1 for _ in staged.glob("*.safetensors")) if staged.is_dir() else 0
        check_resources(config, self.workdir, n_stored=n_stored)  # before anything is allocated
        started = time.perf_counter()
        with self._alone_in_workdir(), self._session():
            orphaned = orphaned_dataset(self.dataset_dir, self.database_path)
            if orphaned:  # before connect() makes a new, empty database
                raise StateError(orphaned)
            engine = connect(sqlite_url(self.database_path))
            try:
                service = CoordinatorService(engine)
                exp, created = self._experiment(engine, config)
                owner = f"{self.owner_prefix}{host_id()}:{self.workdir.resolve()}"
                for prefix in _OWNER_PREFIXES:
                    take_over_leases(engine, exp.id, prefix, owner, self.lease_seconds)
                repaired = self._reconcile(engine, exp)
                writer = service.writer(exp.name)
                service.drain()  # results stored before an interruption
                status = experiment_status(engine, exp.id)
                size = self._population_size(config, status.n_training)
                if self.progress:
                    self.progress.started(status, size)
                self._train_all(service, exp, size, owner)
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
            self._device_name(),
            tuple(repaired),
        )

    def _assimilated(self, service: CoordinatorService, exp: Experiment) -> None:
        """Validate and assimilate what was reported, and tell the display."""
        service.drain()
        if self.progress:
            self.progress.assimilated(experiment_status(service.engine, exp.id))

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
