"""The worker runtime: trains leased work units on this machine, whoever leased them.

Everything it decides comes from the work-unit specs it is handed and the machine itself: the device,
the CPU threads that train, which kernels (first-run checked once per process), how many networks fit
in memory at once, and checkpoints inside a unit. The local executor, `mlc worker` and Ray tasks all
train through it, so a unit trains the same way whichever transport carried it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch

from mlc.errors import ConfigError
from mlc.tasks import DataSpec
from mlc.train import (
    TrainConfig,
    bytes_per_network,
    choose_population_size,
    free_memory,
    keep_freed_memory,
)
from mlc.work._checkpoint import CheckpointStore
from mlc.work._host import resolve_device
from mlc.work._kernels import population_for, set_training_threads
from mlc.work._progress import EpochProgress
from mlc.work._result import WorkUnitResult
from mlc.work._run import DataCache, run_work_units
from mlc.work._spec import WorkUnit

__all__ = ["SizedWork", "WorkerRuntime"]


class SizedWork(Protocol):
    """What sizing needs to know of the work: a WorkUnitSpec has it, and so has an ExperimentConfig."""

    @property
    def model(self) -> str: ...

    @property
    def train(self) -> TrainConfig: ...

    @property
    def data(self) -> DataSpec: ...


class WorkerRuntime:
    """Trains work units on `device` ("auto", "cpu", "cuda[:n]") with `threads` CPU threads (None:
    every usable core) in populations of `population_size` networks (None: as many as memory holds),
    checkpointing into `checkpoint_dir` (None: no checkpoints) every `checkpoint_seconds`.

    Arguments are checked here, before anything is trained; `prepare` sets the process-wide thread
    settings once.
    """

    def __init__(
        self,
        device: torch.device | str = "auto",
        *,
        threads: int | None = None,
        population_size: int | None = None,
        checkpoint_dir: Path | None = None,
        checkpoint_seconds: float = 15.0,
    ) -> None:
        for name, value in (("population_size", population_size), ("threads", threads)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number >= 1 (or None), got {value!r}")
        self.device = resolve_device(str(device))  # a GPU asked for but absent is refused now
        self.threads = threads
        self.population_size = population_size
        self.checkpoints = CheckpointStore(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_seconds = checkpoint_seconds
        self._cache = DataCache()

    def prepare(self) -> None:
        """Process-wide settings for training: the thread split and the allocator's arena."""
        set_training_threads(self.threads)
        keep_freed_memory()

    def kernels(self, model: str) -> str:
        """Which kernels train `model` here, in words (first-run checked)."""
        return population_for(model, self.device).kernels

    def kernel_paths(self, model: str) -> list[str]:
        """The fast paths that passed their first-run check for `model` on this device: what a host
        tells the server, so work that needs a path is sent where it runs."""
        kernels = self.kernels(model)
        return [] if kernels.startswith("PyTorch") else [kernels.split(",")[0]]

    def capacity(self, work: SizedWork, n_left: int | None = None) -> int:
        """How many networks of `work` to train at once: the size asked for, refused where the networks
        it would train at once (at most `n_left`) cannot fit in the free memory, or else as many as
        the memory of the chosen kernels holds."""
        population = population_for(work.model, self.device)
        # evaluation passes are a whole batch even when training's are smaller
        per = bytes_per_network(population, work.train.batch_size, work.data.length, work.data.n_train)
        if self.population_size is None:
            return choose_population_size(self.device, per, cpu_threads=population.threads)
        at_once = min(self.population_size, n_left) if n_left is not None else self.population_size
        free = free_memory(self.device)
        if at_once * per > free:
            raise ConfigError(
                f"a population of {at_once:,} networks needs about {at_once * per / 2**30:.1f} GiB, and "
                f"{self.device} has {free / 2**30:.1f} GiB free: at most {free // per:,} fit (leave the size "
                "out to choose it from memory)"
            )
        return self.population_size

    def train(
        self,
        units: Sequence[WorkUnit],
        on_epoch: Callable[[EpochProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[WorkUnitResult]:
        """Train every unit for its epoch budget, resuming from a checkpoint of this same call where
        there is one; results in the order of `units`. `should_stop()` is asked between epochs (a lost
        lease): training then ends early with a checkpoint and no results. The checkpoint stays until
        `forget(units)`: the caller drops it once the results are safe."""
        return run_work_units(
            units,
            self.device,
            cache=self._cache,
            on_epoch=on_epoch,
            checkpoints=self.checkpoints,
            checkpoint_seconds=self.checkpoint_seconds,
            should_stop=should_stop,
        )

    def forget(self, units: Sequence[WorkUnit]) -> None:
        """Drop the checkpoints of `units`' training (their results are stored)."""
        from mlc.work._run import group_keys

        if self.checkpoints is not None:
            for key in group_keys(units):
                self.checkpoints.discard(key)
