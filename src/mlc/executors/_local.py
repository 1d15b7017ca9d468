"""The local executor: the embedded default. The coordinator service and the worker runtime in one
process, over a SQLite database in the workdir.

It drives the same service as the volunteer server (lease -> train -> report -> validate ->
assimilate) with the same runtime as `mlc worker`, so a local run exercises the whole pipeline, and an
interrupted run resumes from the database and the runtime's checkpoints: re-running it re-leases its
own unfinished units, continues them from their last checkpoint (a few epochs lost at most), and never
repeats assimilated work (the workdir's rules are in `_workdir`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from mlc.coordinator import CoordinatorService, Experiment
from mlc.executors._workdir import CHECKPOINT_DIR, ProgressSink, WorkdirExecutor
from mlc.work import ExperimentConfig, WorkerRuntime

__all__ = ["LocalExecutor"]


class LocalExecutor(WorkdirExecutor):
    """Runs one experiment to completion in `workdir` (database `mlc.db`, dataset `dataset/`,
    checkpoints `checkpoints/`).

    `device` is a torch.device or "auto", "cpu", "cuda[:n]"; `population_size` is the networks
    trained at once (None: as many as the free memory holds); `threads` the CPU threads that train
    (None: all usable cores); `progress` receives the run's events (the CLI's display);
    `checkpoint_seconds` is how often the state inside a work unit is saved, which bounds what an
    interruption loses. Everything is checked here, before `run` writes anything to the workdir.
    """

    owner_prefix = "local:"
    lease_seconds = 24 * 3600.0  # the local owner re-leases its own units on restart anyway

    def __init__(
        self,
        workdir: Path | str,
        device: torch.device | str = "auto",
        population_size: int | None = None,
        progress: ProgressSink | None = None,
        threads: int | None = None,
        checkpoint_seconds: float = 15.0,
    ) -> None:
        super().__init__(workdir, progress)
        self.runtime = WorkerRuntime(
            device,
            threads=threads,
            population_size=population_size,
            checkpoint_dir=self.workdir / CHECKPOINT_DIR,
            checkpoint_seconds=checkpoint_seconds,
        )

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @contextmanager
    def _session(self) -> Iterator[None]:
        self.runtime.prepare()
        yield

    def _population_size(self, config: ExperimentConfig, n_left: int) -> int:
        return self.runtime.capacity(config, n_left)

    def _device_name(self) -> str:
        return str(self.device)

    def _train_all(self, service: CoordinatorService, exp: Experiment, size: int, owner: str) -> None:
        while True:
            service.transition_pass()
            units = service.lease(owner, size, self.lease_seconds, experiment_id=exp.id)
            if not units:
                return
            on_epoch = self.progress.epoch if self.progress else None
            for result in self.runtime.train(units, on_epoch=on_epoch):
                service.report(result.wu_id, result.to_bytes(), owner)
            self.runtime.forget(units)  # the results are in the database: their checkpoints can go
            self._assimilated(service, exp)
