"""What a server shows: each experiment's progress per task, queues by state, active hosts, and
changing an experiment's state (pause, resume, cancel). Plain SQL counts, no torch."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select

from mlc.coordinator._daemons import heartbeats
from mlc.coordinator._db import reading, transaction, utcnow
from mlc.coordinator._schema import (
    ExperimentState,
    NetworkState,
    experiments,
    hosts,
    networks,
    results,
    work_units,
)
from mlc.errors import StateError, UnknownNameError

__all__ = [
    "ExperimentOverview",
    "TaskCounts",
    "experiment_overviews",
    "server_overview",
    "set_experiment_state",
]


@dataclass(frozen=True)
class TaskCounts:
    task: str
    finished: int = 0
    converged: int = 0
    training: int = 0
    failed: int = 0


@dataclass(frozen=True)
class ExperimentOverview:
    name: str
    state: str
    queue: str
    preset: str
    dataset_dir: Path
    tasks: list[TaskCounts] = field(default_factory=list)

    def total(self, attribute: str) -> int:
        return sum(getattr(t, attribute) for t in self.tasks)


def experiment_overviews(engine: Engine) -> list[ExperimentOverview]:
    """Every experiment with its networks per task and state, tasks in the preset's order."""
    with reading(engine) as conn:
        rows = conn.execute(select(experiments).order_by(experiments.c.id)).all()
        counts = conn.execute(
            select(
                networks.c.experiment_id,
                networks.c.task,
                networks.c.state,
                networks.c.converged,
                func.count(),
            ).group_by(networks.c.experiment_id, networks.c.task, networks.c.state, networks.c.converged)
        ).all()
    by_task: dict[tuple[int, str], dict[str, int]] = {}
    for exp_id, task, state, converged, n in counts:
        c = by_task.setdefault((exp_id, task), {"finished": 0, "converged": 0, "training": 0, "failed": 0})
        c[NetworkState(state).value] += n
        if state == NetworkState.FINISHED and converged:
            c["converged"] += n
    out = []
    for row in rows:
        config = json.loads(row.config_json)
        order = config.get("tasks") or sorted(t for e, t in by_task if e == row.id)
        tasks = [TaskCounts(t, **by_task.get((row.id, t), {})) for t in order]
        out.append(
            ExperimentOverview(
                row.name,
                row.state,
                row.queue,
                str(config.get("name", row.name)),
                Path(row.dataset_dir),
                tasks,
            )
        )
    return out


def server_overview(engine: Engine) -> dict[str, object]:
    """Queues by state, uploads by verdict, hosts (all, and active in the last hour), experiments by
    state, and the daemons' heartbeats."""
    now = utcnow()
    with reading(engine) as conn:
        units = dict(
            conn.execute(select(work_units.c.state, func.count()).group_by(work_units.c.state)).all()
        )
        verdicts = dict(
            conn.execute(select(results.c.verdict, func.count()).group_by(results.c.verdict)).all()
        )
        n_hosts = conn.execute(select(func.count()).select_from(hosts)).scalar() or 0
        active = conn.execute(
            select(func.count()).select_from(hosts).where(hosts.c.last_seen_at >= now - timedelta(hours=1))
        ).scalar()
        states = dict(
            conn.execute(select(experiments.c.state, func.count()).group_by(experiments.c.state)).all()
        )
    return {
        "units": units,
        "results": verdicts,
        "hosts_total": n_hosts,
        "hosts_active_last_hour": active or 0,
        "experiments": states,
        "daemons": heartbeats(engine, now),
    }


_ALLOWED = {  # for each state an experiment may move to, the states it may come from
    ExperimentState.PAUSED: {ExperimentState.RUNNING},
    ExperimentState.RUNNING: {ExperimentState.PAUSED},
    ExperimentState.CANCELLED: {ExperimentState.RUNNING, ExperimentState.PAUSED},
}


def set_experiment_state(engine: Engine, name: str, state: ExperimentState) -> str:
    """Pause, resume (RUNNING) or cancel experiment `name`; returns the state it was in. Leases in
    flight run out as usual: their results are still taken, nothing more is handed out."""
    with transaction(engine) as conn:
        found = conn.execute(
            select(experiments.c.state).where(experiments.c.name == name).with_for_update()
        ).scalar()
        if found is None:
            raise UnknownNameError(f"no experiment {name!r} on this server")
        if found == state:
            return found
        if found not in _ALLOWED[state]:
            raise StateError(f"experiment {name!r} is {found}; it cannot become {state.value}")
        conn.execute(experiments.update().where(experiments.c.name == name).values(state=state))
    return found


def set_experiment_queue(engine: Engine, name: str, queue: str) -> None:
    """Put experiment `name`'s work in `queue` (cpu, gpu or test): only hosts that take that queue
    lease it."""
    with transaction(engine) as conn:
        updated = conn.execute(experiments.update().where(experiments.c.name == name).values(queue=queue))
        if not updated.rowcount:
            raise UnknownNameError(f"no experiment {name!r} on this server")
