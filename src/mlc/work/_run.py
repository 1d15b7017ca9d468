"""Running work units: redraw the data, build or restore the population, train, package the result.

Units that share data, settings and epoch budget are merged into one population, so a worker with a
large device trains many small units in one batched computation.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mlc import models, tasks
from mlc.errors import ConfigError, MLCError
from mlc.tasks import SharedData
from mlc.train import AnyArrays, EpochHistory, PopulationState, PopulationTrainer, arrays_for
from mlc.work._checkpoint import CheckpointStore, checkpoint_key
from mlc.work._host import describe_device, host_id, kernel_class, platform_string, torch_version
from mlc.work._kernels import population_for
from mlc.work._progress import EpochProgress, epoch_progress
from mlc.work._result import Provenance, WorkUnitResult, decode_state
from mlc.work._spec import Member, WorkUnit, WorkUnitSpec

__all__ = ["DataCache", "TrainingStopped", "group_keys", "run_work_units", "shared_data_for"]


def shared_data_for(spec: WorkUnitSpec) -> SharedData:
    """Redraw the experiment's data from the spec and prove it is the data the spec names."""
    data = tasks.shared_data_for_tasks(spec.data, spec.tasks, spec.task_params)
    if data.digest() != spec.data_digest:
        raise ConfigError(
            f"work unit {spec.wu_id}: the redrawn data does not match its digest; "
            "this worker's task definitions differ from the server's (upgrade mlc)"
        )
    return data


class DataCache:
    """Shared data and device tensors by digest: an experiment's data is drawn once per worker."""

    def __init__(self) -> None:
        self._arrays: dict[tuple[str, str], AnyArrays] = {}

    def arrays(self, spec: WorkUnitSpec, device: torch.device) -> AnyArrays:
        key = (spec.data_digest, str(device))
        if key not in self._arrays:
            self._arrays[key] = arrays_for(shared_data_for(spec), spec.tasks, device)
        return self._arrays[key]


_log = logging.getLogger("mlc.work")


class TrainingStopped(MLCError):
    """Training was stopped between epochs (`should_stop`): a checkpoint holds what was done."""


def _group_key(spec: WorkUnitSpec) -> tuple[str, str, str, int]:
    model = f"{spec.model} {json.dumps(spec.model_settings, sort_keys=True)}"
    return spec.data_digest, model, repr(spec.train), spec.epochs


def _groups(units: Sequence[WorkUnit]) -> list[list[int]]:
    """Indices of the units that train as one population (same data, model, settings and budget)."""
    groups: dict[tuple[str, str, str, int], list[int]] = defaultdict(list)
    for i, unit in enumerate(units):
        groups[_group_key(unit.spec)].append(i)
    return list(groups.values())


def group_keys(units: Sequence[WorkUnit]) -> list[str]:
    """The checkpoint key of each population `run_work_units` trains for `units`."""
    return [checkpoint_key([units[i] for i in indices]) for indices in _groups(units)]


def _initial_state(unit: WorkUnit, population: models.Population) -> PopulationState:
    spec = unit.spec
    if unit.state is None:
        return PopulationState.fresh(population.init([m.net_seed for m in spec.members]))
    state = decode_state(unit.state, spec.parent or "")
    if state.n_members != len(spec.members):
        raise ConfigError(
            f"work unit {spec.wu_id}: state has {state.n_members} rows, spec {len(spec.members)} members"
        )
    return state


def run_work_units(
    units: Sequence[WorkUnit],
    device: torch.device,
    *,
    cache: DataCache | None = None,
    population_factory: Callable[[str, torch.device], models.Population] | None = None,
    on_epoch: Callable[[EpochProgress], None] | None = None,
    checkpoints: CheckpointStore | None = None,
    checkpoint_seconds: float = 15.0,
    should_stop: Callable[[], bool] | None = None,
) -> list[WorkUnitResult]:
    """Train every unit for its epoch budget; results come back in the order of `units`.

    With `checkpoints`, each population's state is saved at most every `checkpoint_seconds` (after
    the epoch that passes the mark) and a call that finds its own checkpoint continues from it,
    bit-identically to never having stopped: the batch order of an epoch depends only on the network
    and the epoch. `should_stop()` is asked after every epoch; True saves a checkpoint and raises
    TrainingStopped. `on_epoch` hears of every epoch of every population (`EpochProgress`).
    """
    cache = cache or DataCache()
    results: list[WorkUnitResult | None] = [None] * len(units)
    for number, indices in enumerate(_groups(units)):
        group = [units[i] for i in indices]
        plan = _Plan(population_factory, on_epoch, checkpoints, checkpoint_seconds, should_stop, number)
        for i, result in zip(indices, _run_group(group, device, cache, plan), strict=True):
            results[i] = result
    return [r for r in results if r is not None]


@dataclass(frozen=True)
class _Plan:
    """How a group trains, besides what it trains: the caller's hooks and the checkpoint settings."""

    population_factory: Callable[[str, torch.device], models.Population] | None
    on_epoch: Callable[[EpochProgress], None] | None
    checkpoints: CheckpointStore | None
    checkpoint_seconds: float
    should_stop: Callable[[], bool] | None
    population: int  # its number in the call, for the progress reports


def _run_group(
    units: list[WorkUnit], device: torch.device, cache: DataCache, plan: _Plan
) -> list[WorkUnitResult]:
    first = units[0].spec
    if first.model_settings:  # a sweep variant of a classifier family: the generic path, no kernels to pick
        population = models.population(first.model, settings=first.model_settings)
    else:
        population = (plan.population_factory or population_for)(first.model, device)
    if population.layout.layout_id != first.layout_id:
        raise ConfigError(
            f"work unit {first.wu_id} wants layout {first.layout_id}, this worker has "
            f"{population.layout.layout_id}"
        )
    data = cache.arrays(first, device)
    members = [m for u in units for m in u.spec.members]
    key = checkpoint_key(units)
    resumed = plan.checkpoints.load(key) if plan.checkpoints is not None else None
    if resumed is None:
        state = PopulationState.concat([_initial_state(u, population) for u in units])
        history, boundaries = _no_history(len(members)), []
    else:
        state, history, boundaries = resumed
        done = history.train_loss.shape[1]
        _log.info("resumed from a checkpoint after %d of %d epochs", done, first.epochs)
    state = state.to(device)
    started = time.perf_counter()
    trainer = PopulationTrainer(population, first.train)
    history = _train_in_stretches(trainer, state, members, data, history, boundaries, first, key, plan)
    wall = time.perf_counter() - started
    kind, name = describe_device(device)
    klass = kernel_class(device, population.kernels)
    state = state.to("cpu")
    results, row = [], 0
    for unit in units:
        n = len(unit.spec.members)
        rows = list(range(row, row + n))
        row += n
        prov = Provenance(
            kind, name, torch_version(), platform_string(), host_id(), wall * n / len(members), klass
        )
        results.append(
            WorkUnitResult(
                wu_id=unit.spec.wu_id,
                members=tuple(m.net_id for m in unit.spec.members),
                state=state.select(rows),
                history=_history_rows(history, rows),
                provenance=prov,
                boundaries=tuple(b.select(rows) for b in boundaries),
            )
        )
    return results


def _train_in_stretches(
    trainer: PopulationTrainer,
    state: PopulationState,
    members: list[Member],
    data: AnyArrays,
    history: EpochHistory,
    boundaries: list[PopulationState],
    spec: WorkUnitSpec,
    key: str,
    plan: _Plan,
) -> EpochHistory:
    """Train epoch by epoch up to the budget (the epochs in `history` are done), snapshotting the
    state at the spec's segment boundaries into `boundaries` and saving a checkpoint whenever
    `plan.checkpoint_seconds` have passed since the last; returns the whole call's history."""
    seeds, tasks_ = [m.net_seed for m in members], [m.task for m in members]
    epochs, done = spec.epochs, history.train_loss.shape[1]
    last_save = time.monotonic()
    while done < epochs and bool((~state.stopped).any()):
        steps_before, stopped_before = int(state.step.sum()), int(state.stopped.sum())
        began = time.monotonic()
        history = _joined(history, trainer.train(state, seeds, tasks_, data, 1))
        done += 1
        if plan.on_epoch is not None:
            plan.on_epoch(
                epoch_progress(
                    state,
                    history,
                    epochs_done=done,
                    epochs=epochs,
                    n_stopped_now=int(state.stopped.sum()) - stopped_before,
                    model_steps=int(state.step.sum()) - steps_before,
                    seconds=time.monotonic() - began,
                    population=plan.population,
                )
            )
        if done in spec.boundaries:
            boundaries.append(state.cpu_copy())
        stop = plan.should_stop is not None and plan.should_stop()
        due = time.monotonic() - last_save >= plan.checkpoint_seconds
        if plan.checkpoints is not None and (stop or due) and done < epochs:
            plan.checkpoints.save(key, state.to("cpu"), history, boundaries)
            last_save = time.monotonic()
        if stop:
            raise TrainingStopped(f"training stopped after {done} of {epochs} epochs")
    while len(boundaries) < len(spec.boundaries):  # every network stopped before the boundary
        boundaries.append(state.cpu_copy())
    return _joined(history, _no_history(len(members), epochs - done))  # NaN to the budget's width


def _no_history(m: int, width: int = 0) -> EpochHistory:
    """`width` epochs that no member ran (NaN)."""
    empty = np.full((m, width), np.nan, dtype=np.float32)
    return EpochHistory(empty, empty.copy(), empty.copy(), np.zeros(m, dtype=np.int64))


def _joined(before: EpochHistory, after: EpochHistory) -> EpochHistory:
    """`before` followed by `after`, member by member: a network's epochs are a prefix of each (a
    stopped network runs no more), so its values are its `before` epochs and then its `after` ones."""
    m, width = before.n_epochs.shape[0], before.train_loss.shape[1] + after.train_loss.shape[1]
    out = EpochHistory(*(np.full((m, width), np.nan, dtype=np.float32) for _ in range(3)),
                       before.n_epochs + after.n_epochs)
    for name in ("train_loss", "val_loss", "val_accuracy"):
        target, first, second = getattr(out, name), getattr(before, name), getattr(after, name)
        for row in range(m):
            n1, n2 = int(before.n_epochs[row]), int(after.n_epochs[row])
            target[row, :n1] = first[row, :n1]
            target[row, n1 : n1 + n2] = second[row, :n2]
    return out


def _history_rows(history: EpochHistory, rows: list[int]) -> EpochHistory:
    idx = np.asarray(rows)
    return EpochHistory(
        history.train_loss[idx].copy(),
        history.val_loss[idx].copy(),
        history.val_accuracy[idx].copy(),
        history.n_epochs[idx].copy(),
    )
