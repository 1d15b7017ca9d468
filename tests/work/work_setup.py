"""What the work-layer tests share: a work unit of the first network of some tasks, built from a preset
as the coordinator would build one (without a database)."""

from __future__ import annotations

from collections.abc import Sequence

from mlc import models
from mlc.coordinator import build_shared_data
from mlc.work import ExperimentConfig, Member, WorkUnitSpec


def first_networks_spec(
    config: ExperimentConfig, tasks: Sequence[str], epochs: int, segments: int = 1
) -> WorkUnitSpec:
    """A root unit (`exp-g000000-p000`) holding network 0 of each of `tasks`."""
    members = tuple(Member(config.net_id(t, 0), t, 0, config.net_seed(t, 0)) for t in tasks)
    return WorkUnitSpec(
        wu_id="exp-g000000-p000",
        experiment=config.name,
        model=config.model,
        layout_id=models.layout(config.model).layout_id,
        train=config.train,
        data=config.data,
        data_digest=build_shared_data(config).digest(),
        tasks=config.tasks,
        members=members,
        epochs=epochs,
        segments=segments,
    )
