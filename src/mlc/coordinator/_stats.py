"""What the project's pages show, as plain dataclasses: the front page (volunteers and hosts active,
the queue, each experiment's progress and dataset milestones, the credit leaders, the daemons'
health), one experiment in detail, one host, one volunteer. The server renders the same objects as
HTML and as JSON, so the two never disagree. Plain SQL counts, no torch.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, Table, func, select

from mlc.coordinator._credit import decayed_rac
from mlc.coordinator._daemons import heartbeats
from mlc.coordinator._db import reading, utcnow
from mlc.coordinator._hosts import host_owner
from mlc.coordinator._overview import experiment_overviews
from mlc.coordinator._schema import (
    NetworkState,
    Verdict,
    WUState,
    accounts,
    experiments,
    history,
    hosts,
    networks,
    results,
    work_units,
)
from mlc.errors import UnknownNameError

__all__ = [
    "ACTIVE_WITHIN",
    "MILESTONES",
    "CreditRow",
    "DaemonHealth",
    "ExperimentDetail",
    "ExperimentProgress",
    "FrontPage",
    "HostDetail",
    "LossHistogram",
    "Milestone",
    "TaskCell",
    "TaskDetail",
    "VolunteerDetail",
    "experiment_detail",
    "front_page",
    "host_detail",
    "volunteer_detail",
]

# networks per task, as MLC@Home's DS1-100 ... DS1-10000: a preset's `subsets` (its release sizes),
# else these up to its target, and the target
MILESTONES = (100, 500, 1000, 5000, 10000)
ACTIVE_WITHIN = timedelta(days=1)  # a host seen in this window is active, and so is its volunteer
STALE_DAEMON_S = 120.0  # a daemon whose last pass is older than this is shown unhealthy
_TOP = 10
LOG_SPAN = 100.0  # a loss histogram spanning more than this factor is binned in log10(loss)


@dataclass(frozen=True)
class Milestone:
    label: str  # e.g. "DS1-1000"
    networks_per_task: int
    reached: bool  # every task has this many finished networks


@dataclass(frozen=True)
class TaskCell:
    task: str
    finished: int
    target: int
    fraction: float  # finished / target, 0..1


@dataclass(frozen=True)
class ExperimentProgress:
    name: str
    state: str
    networks_per_task: int
    finished: int
    target: int
    fraction: float
    milestones: list[Milestone]
    tasks: list[TaskCell]


@dataclass(frozen=True)
class CreditRow:
    id: int
    name: str
    credit: float
    rac: float  # recent average credit per day, decayed to now


@dataclass(frozen=True)
class DaemonHealth:
    name: str
    healthy: bool  # passed recently, and its last pass did not fail
    age_s: float
    passes: int
    last_error: str | None


@dataclass(frozen=True)
class FrontPage:
    generated_at: str
    volunteers_total: int
    volunteers_active: int
    hosts_total: int
    hosts_active: int
    units_ready: int
    units_in_progress: int
    units_waiting_validation: int
    units_done_today: int
    experiments: list[ExperimentProgress]
    top_volunteers: list[CreditRow]
    top_hosts: list[CreditRow]
    daemons: list[DaemonHealth]


@dataclass(frozen=True)
class TaskDetail:
    task: str
    target: int
    finished: int
    converged: int
    training: int
    failed: int
    convergence_rate: float | None  # converged / finished
    mean_epochs: float | None  # of its finished networks


@dataclass(frozen=True)
class LossHistogram:
    """Final validation losses of finished networks in `counts[i]` between `edges[i]` and `edges[i+1]`;
    bins of equal width in log10(loss) where `log_scale` (losses span orders of magnitude)."""

    edges: list[float]
    counts: list[int]
    n: int
    median: float | None
    log_scale: bool = False


@dataclass(frozen=True)
class ExperimentDetail:
    progress: ExperimentProgress
    preset: str
    queue: str
    tasks: list[TaskDetail]
    convergence_rate: float | None
    mean_epochs: float | None
    rejections: dict[str, int]  # invalid results by reason (the code before the first ':')
    loss: LossHistogram
    dataset_dir: str
    dataset_final: bool  # the dataset is finalized (the experiment has ended)


@dataclass(frozen=True)
class HostDetail:
    id: int
    name: str
    created_at: str
    last_seen_at: str
    active: bool
    device: str
    device_name: str
    cpus: int
    platform: str
    trust: str
    volunteer_id: int | None
    volunteer_name: str | None
    credit: float
    rac: float
    units_done: int  # results judged valid
    results: dict[str, int] = field(default_factory=dict)  # by verdict
    validity_rate: float | None = None  # valid / (valid + invalid)


@dataclass(frozen=True)
class VolunteerDetail:
    id: int
    name: str
    created_at: str
    credit: float
    rac: float
    units_done: int
    validity_rate: float | None
    hosts: list[HostDetail]
    trust: dict[str, int]  # its hosts by trust state


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds") + "Z"


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# -- the front page ---------------------------------------------------------------------------------


def front_page(engine: Engine) -> FrontPage:
    now = utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with reading(engine) as conn:
        units = dict(
            conn.execute(select(work_units.c.state, func.count()).group_by(work_units.c.state)).all()
        )
        done_today = conn.execute(
            select(func.count())
            .select_from(work_units)
            .where(work_units.c.state == WUState.DONE, work_units.c.updated_at >= midnight)
        ).scalar()
        recent = hosts.c.last_seen_at >= now - ACTIVE_WITHIN
        n_hosts = conn.execute(select(func.count()).select_from(hosts)).scalar()
        n_active = conn.execute(select(func.count()).select_from(hosts).where(recent)).scalar()
        n_volunteers = conn.execute(select(func.count()).select_from(accounts)).scalar()
        n_volunteers_active = conn.execute(
            select(func.count(func.distinct(hosts.c.account_id))).where(
                recent, hosts.c.account_id.isnot(None)
            )
        ).scalar()
        top_volunteers = _top(conn, accounts, now)
        top_hosts = _top(conn, hosts, now)
    return FrontPage(
        generated_at=_iso(now),
        volunteers_total=n_volunteers or 0,
        volunteers_active=n_volunteers_active or 0,
        hosts_total=n_hosts or 0,
        hosts_active=n_active or 0,
        units_ready=units.get(WUState.READY, 0),
        units_in_progress=units.get(WUState.LEASED, 0),
        units_waiting_validation=units.get(WUState.REPORTED, 0),
        units_done_today=done_today or 0,
        experiments=experiment_progress(engine),
        top_volunteers=top_volunteers,
        top_hosts=top_hosts,
        daemons=[
            DaemonHealth(
                d["name"],  # type: ignore[arg-type]
                d["age_s"] <= STALE_DAEMON_S and not d["last_error"],  # type: ignore[operator]
                d["age_s"],  # type: ignore[arg-type]
                d["passes"],  # type: ignore[arg-type]
                d["last_error"],  # type: ignore[arg-type]
            )
            for d in heartbeats(engine, now)
        ],
    )


def _top(conn: Connection, table: Table, now: datetime) -> list[CreditRow]:
    rows = conn.execute(
        select(table.c.id, table.c.name, table.c.credit, table.c.rac, table.c.rac_at)
        .where(table.c.credit > 0)
        .order_by(table.c.credit.desc(), table.c.id)
        .limit(_TOP)
    ).all()
    return [CreditRow(r.id, r.name, r.credit, decayed_rac(r.rac, r.rac_at, now)) for r in rows]


def release_name(preset: str, per_task: int) -> str:
    """A milestone's name: that of the release `mlc dataset export` cuts at it (`MLDS-DS1-100`).
    `mlc.store.default_export_name` says the same, but importing the store loads torch."""
    return f"{preset.upper()}-{per_task}"


def experiment_progress(engine: Engine) -> list[ExperimentProgress]:
    """Each experiment's finished networks against its target, milestones and per-task cells."""
    with reading(engine) as conn:
        configs = {
            name: json.loads(config)
            for name, config in conn.execute(select(experiments.c.name, experiments.c.config_json))
        }
    out = []
    for e in experiment_overviews(engine):
        config = configs.get(e.name, {})
        per_task = int(config.get("networks_per_task", 0))
        cells = [
            TaskCell(t.task, t.finished, per_task, min(1.0, t.finished / per_task) if per_task else 0.0)
            for t in e.tasks
        ]
        least = min((t.finished for t in e.tasks), default=0)
        marks = sorted(config.get("subsets") or {m for m in MILESTONES if m < per_task} | {per_task})
        target = per_task * len(cells)
        out.append(
            ExperimentProgress(
                name=e.name,
                state=e.state,
                networks_per_task=per_task,
                finished=e.total("finished"),
                target=target,
                fraction=round(min(1.0, e.total("finished") / target), 4) if target else 0.0,
                milestones=[Milestone(release_name(e.preset, m), m, least >= m) for m in marks],
                tasks=cells,
            )
        )
    return out


# -- one experiment ---------------------------------------------------------------------------------


def experiment_detail(engine: Engine, name: str) -> ExperimentDetail:
    progress = next((p for p in experiment_progress(engine) if p.name == name), None)
    overview = next((e for e in experiment_overviews(engine) if e.name == name), None)
    if progress is None or overview is None:
        raise UnknownNameError(f"no experiment {name!r} on this server")
    with reading(engine) as conn:
        exp_id = conn.execute(select(experiments.c.id).where(experiments.c.name == name)).scalar()
        epochs = conn.execute(
            select(networks.c.task, networks.c.epochs).where(
                networks.c.experiment_id == exp_id, networks.c.state == NetworkState.FINISHED
            )
        ).all()
        losses = conn.execute(
            select(history.c.val_loss)
            .join(
                networks,
                (networks.c.experiment_id == history.c.experiment_id)
                & (networks.c.net_id == history.c.net_id)
                & (networks.c.epochs == history.c.epoch),
            )
            .where(networks.c.experiment_id == exp_id, networks.c.state == NetworkState.FINISHED)
        ).scalars().all()
        reasons = conn.execute(
            select(results.c.reason)
            .join(work_units, work_units.c.id == results.c.wu_id)
            .where(work_units.c.experiment_id == exp_id, results.c.verdict == Verdict.INVALID)
        ).scalars().all()
    by_task: dict[str, list[int]] = {}
    for task, n in epochs:
        by_task.setdefault(task, []).append(n)
    tasks = [
        TaskDetail(
            t.task,
            progress.networks_per_task,
            t.finished,
            t.converged,
            t.training,
            t.failed,
            _rate(t.converged, t.finished),
            round(statistics.fmean(by_task[t.task]), 2) if by_task.get(t.task) else None,
        )
        for t in overview.tasks
    ]
    rejections: dict[str, int] = {}
    for reason in reasons:
        code = (reason or "unknown").split(":", 1)[0].strip()
        rejections[code] = rejections.get(code, 0) + 1
    all_epochs = [n for task_epochs in by_task.values() for n in task_epochs]
    return ExperimentDetail(
        progress=progress,
        preset=overview.preset,
        queue=overview.queue,
        tasks=tasks,
        convergence_rate=_rate(overview.total("converged"), overview.total("finished")),
        mean_epochs=round(statistics.fmean(all_epochs), 2) if all_epochs else None,
        rejections=dict(sorted(rejections.items(), key=lambda kv: -kv[1])),
        loss=loss_histogram([float(x) for x in losses]),
        dataset_dir=str(overview.dataset_dir),
        dataset_final=overview.state in ("finished", "cancelled"),
    )


def loss_histogram(losses: list[float], bins: int = 20) -> LossHistogram:
    """`bins` equal-width bins from the smallest loss to the largest (one bin where all are equal),
    in log10(loss) where every loss is positive and the largest is over LOG_SPAN times the smallest:
    a converged network's loss is orders of magnitude below a stalled one's."""
    if not losses:
        return LossHistogram([], [], 0, None)
    low, high = min(losses), max(losses)
    if high == low:
        return LossHistogram([low, high], [len(losses)], len(losses), low)
    log_scale = low > 0 and high / low > LOG_SPAN
    scale = math.log10 if log_scale else float
    values = [scale(x) for x in losses]
    low_v, width = scale(low), (scale(high) - scale(low)) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - low_v) / width))] += 1
    edges = [low_v + i * width for i in range(bins + 1)]
    if log_scale:
        edges = [10**e for e in edges]
    edges[0], edges[-1] = low, high  # exactly, not as rounded through the logarithm
    return LossHistogram(edges, counts, len(losses), statistics.median(losses), log_scale)


# -- hosts and volunteers ---------------------------------------------------------------------------


_MAX_ROW_ID = 2**31 - 1  # ids are 32-bit integer columns: a larger one names nothing (PostgreSQL refuses it)


def host_detail(engine: Engine, host_id: int) -> HostDetail:
    found = _host_details(engine, hosts.c.id == host_id) if 1 <= host_id <= _MAX_ROW_ID else []
    if not found:
        raise UnknownNameError(f"no host {host_id} on this server")
    return found[0]


def _host_details(engine: Engine, where: object) -> list[HostDetail]:
    now = utcnow()
    with reading(engine) as conn:
        rows = conn.execute(
            select(hosts, accounts.c.name.label("account_name"))
            .outerjoin(accounts, accounts.c.id == hosts.c.account_id)
            .where(where)  # type: ignore[arg-type]
            .order_by(hosts.c.id)
        ).all()
        owners = [host_owner(r.id) for r in rows]
        verdicts: dict[str, dict[str, int]] = {}
        for owner, verdict, n in conn.execute(
            select(results.c.reporter, results.c.verdict, func.count())
            .where(results.c.reporter.in_(owners))
            .group_by(results.c.reporter, results.c.verdict)
        ):
            verdicts.setdefault(owner, {})[verdict] = n
    out = []
    for r in rows:
        counts = verdicts.get(host_owner(r.id), {})
        valid, invalid = counts.get(Verdict.VALID, 0), counts.get(Verdict.INVALID, 0)
        description = json.loads(r.description_json)
        out.append(
            HostDetail(
                id=r.id,
                name=r.name,
                created_at=_iso(r.created_at),
                last_seen_at=_iso(r.last_seen_at),
                active=r.last_seen_at >= now - ACTIVE_WITHIN,
                device=str(description.get("device", "cpu")),
                device_name=str(description.get("device_name", "")),
                cpus=int(description.get("cpus", 1)),
                platform=str(description.get("platform", "")),
                trust=r.trust,
                volunteer_id=r.account_id,
                volunteer_name=r.account_name,
                credit=r.credit,
                rac=decayed_rac(r.rac, r.rac_at, now),
                units_done=valid,
                results=dict(sorted(counts.items())),
                validity_rate=_rate(valid, valid + invalid),
            )
        )
    return out


def volunteer_detail(engine: Engine, account_id: int) -> VolunteerDetail:
    now = utcnow()
    if not 1 <= account_id <= _MAX_ROW_ID:
        raise UnknownNameError(f"no volunteer {account_id} on this server")
    with reading(engine) as conn:
        row = conn.execute(select(accounts).where(accounts.c.id == account_id)).first()
    if row is None:
        raise UnknownNameError(f"no volunteer {account_id} on this server")
    its_hosts = _host_details(engine, hosts.c.account_id == account_id)
    valid = sum(h.units_done for h in its_hosts)
    invalid = sum(h.results.get(Verdict.INVALID, 0) for h in its_hosts)
    trust: dict[str, int] = {}
    for h in its_hosts:
        trust[h.trust] = trust.get(h.trust, 0) + 1
    return VolunteerDetail(
        id=row.id,
        name=row.name,
        created_at=_iso(row.created_at),
        credit=row.credit,
        rac=decayed_rac(row.rac, row.rac_at, now),
        units_done=valid,
        validity_rate=_rate(valid, valid + invalid),
        hosts=its_hosts,
        trust=trust,
    )
