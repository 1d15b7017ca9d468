"""Running work units: redraw the data, build or restore the population, train, package the result.

Units that share data, settings and epoch budget are merged into one population, so a worker with a
large device trains many small units in one batched computation.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import torch

from mlc import models, tasks
from mlc.errors import ConfigError
from mlc.tasks import SharedData
from mlc.train import EpochHistory, EpochReport, PopulationState, PopulationTrainer, TrainingArrays
from mlc.work._host import describe_device, host_id, platform_string, torch_version
from mlc.work._kernels import population_for
from mlc.work._result import Provenance, WorkUnitResult, decode_state
from mlc.work._spec import WorkUnit, WorkUnitSpec

__all__ = ["DataCache", "WorkUnit", "run_work_units", "shared_data_for"]


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
        self._arrays: dict[tuple[str, str], TrainingArrays] = {}

    def arrays(self, spec: WorkUnitSpec, device: torch.device) -> TrainingArrays:
        key = (spec.data_digest, str(device))
        if key not in self._arrays:
            self._arrays[key] = TrainingArrays.from_shared(shared_data_for(spec), spec.tasks, device)
        return self._arrays[key]


def _group_key(spec: WorkUnitSpec) -> tuple[str, str, str, int]:
    return spec.data_digest, spec.model, repr(spec.train), spec.epochs


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
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> list[WorkUnitResult]:
    """Train every unit for its epoch budget; results come back in the order of `units`."""
    cache = cache or DataCache()
    groups: dict[tuple[str, str, str, int], list[int]] = defaultdict(list)
    for i, unit in enumerate(units):
        groups[_group_key(unit.spec)].append(i)
    results: list[WorkUnitResult | None] = [None] * len(units)
    for indices in groups.values():
        for i, result in zip(
            indices,
            _run_group([units[i] for i in indices], device, cache, population_factory, on_epoch),
            strict=True,
        ):
            results[i] = result
    return [r for r in results if r is not None]


def _run_group(
    units: list[WorkUnit],
    device: torch.device,
    cache: DataCache,
    population_factory: Callable[[str, torch.device], models.Population] | None,
    on_epoch: Callable[[EpochReport], None] | None,
) -> list[WorkUnitResult]:
    first = units[0].spec
    population = (population_factory or population_for)(first.model, device)
    if population.layout.layout_id != first.layout_id:
        raise ConfigError(
            f"work unit {first.wu_id} wants layout {first.layout_id}, this worker has "
            f"{population.layout.layout_id}"
        )
    data = cache.arrays(first, device)
    state = PopulationState.concat([_initial_state(u, population) for u in units]).to(device)
    members = [m for u in units for m in u.spec.members]
    trainer = PopulationTrainer(population, first.train)
    started = time.perf_counter()
    history = trainer.train(
        state, [m.net_seed for m in members], [m.task for m in members], data, first.epochs, on_epoch
    )
    wall = time.perf_counter() - started
    kind, name = describe_device(device)
    state = state.to("cpu")
    results, row = [], 0
    for unit in units:
        n = len(unit.spec.members)
        rows = list(range(row, row + n))
        row += n
        prov = Provenance(kind, name, torch_version(), platform_string(), host_id(), wall * n / len(members))
        results.append(
            WorkUnitResult(
                wu_id=unit.spec.wu_id,
                members=tuple(m.net_id for m in unit.spec.members),
                state=state.select(rows),
                history=_history_rows(history, rows),
                provenance=prov,
            )
        )
    return results


def _history_rows(history: EpochHistory, rows: list[int]) -> EpochHistory:
    idx = np.asarray(rows)
    return EpochHistory(
        history.train_loss[idx].copy(),
        history.val_loss[idx].copy(),
        history.val_accuracy[idx].copy(),
        history.n_epochs[idx].copy(),
    )
