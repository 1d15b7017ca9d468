"""Counts for progress displays and `mlc status`: networks by state, units by state, epochs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, func, select

from mlc.coordinator._db import reading
from mlc.coordinator._schema import NetworkState, WUState, experiments, networks, work_units

__all__ = ["ExperimentStatus", "experiment_status"]


@dataclass(frozen=True)
class ExperimentStatus:
    n_networks: int
    n_finished: int
    n_converged: int
    n_failed: int
    epochs_done: int  # summed over networks
    epochs_training: int  # summed over networks still training
    units: dict[str, int] = field(default_factory=dict)  # WUState value -> count
    per_task: dict[str, tuple[int, int, int]] = field(
        default_factory=dict
    )  # task -> (total, finished, conv.)
    finished_at: datetime | None = None  # naive UTC; set when the last network finished or failed

    @property
    def n_training(self) -> int:
        return self.n_networks - self.n_finished - self.n_failed

    def budget_done(self, max_epochs: int) -> int:
        """Epochs of the whole budget (networks x max_epochs) that need no more work."""
        return self.epochs_training + (self.n_finished + self.n_failed) * max_epochs

    @property
    def complete(self) -> bool:
        return self.n_training == 0


def experiment_status(engine: Engine, experiment_id: int) -> ExperimentStatus:
    """Read-only (on SQLite a deferred WAL read): it never waits for a run that is writing."""
    with reading(engine) as conn:
        per_task: dict[str, list[int]] = {}
        totals = {s: 0 for s in NetworkState}
        converged = epochs = training_epochs = 0
        query = (
            select(
                networks.c.task,
                networks.c.state,
                networks.c.converged,
                func.count(),
                func.sum(networks.c.epochs),
            )
            .where(networks.c.experiment_id == experiment_id)
            .group_by(networks.c.task, networks.c.state, networks.c.converged)
        )
        for task, state, conv, count, epoch_sum in conn.execute(query):
            counts = per_task.setdefault(task, [0, 0, 0])
            counts[0] += count
            totals[NetworkState(state)] += count
            epochs += int(epoch_sum or 0)
            if state == NetworkState.TRAINING:
                training_epochs += int(epoch_sum or 0)
            if state == NetworkState.FINISHED:
                counts[1] += count
                if conv:
                    counts[2] += count
                    converged += count
        units = dict(
            conn.execute(
                select(work_units.c.state, func.count())
                .where(work_units.c.experiment_id == experiment_id)
                .group_by(work_units.c.state)
            ).all()
        )
        finished_at = conn.execute(
            select(experiments.c.finished_at).where(experiments.c.id == experiment_id)
        ).scalar()
    return ExperimentStatus(
        n_networks=sum(totals.values()),
        n_finished=totals[NetworkState.FINISHED],
        n_converged=converged,
        n_failed=totals[NetworkState.FAILED],
        epochs_done=epochs,
        epochs_training=training_epochs,
        units={WUState(k).value: v for k, v in units.items()},
        per_task={t: (c[0], c[1], c[2]) for t, c in per_task.items()},
        finished_at=finished_at,
    )
