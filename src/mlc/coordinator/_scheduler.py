"""Handing out work and taking results back: leases, idempotent reports, and the transitioner pass.

Every call is one transaction. A lease is a promise with a deadline: when it passes, the transitioner
(or the next lease request) puts the unit back in the queue, or fails it after `max_attempts` leases.
Every function that may move a unit takes the same `max_attempts` (default DEFAULT_MAX_ATTEMPTS).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, Engine, and_, or_, select
from sqlalchemy.exc import IntegrityError

from mlc.coordinator._db import reading, transaction, utcnow
from mlc.coordinator._experiments import mark_finished_if_complete
from mlc.coordinator._replication import accept_unreplicable
from mlc.coordinator._schema import (
    ExperimentState,
    NetworkState,
    Verdict,
    WUState,
    experiments,
    leases,
    networks,
    results,
    work_units,
)
from mlc.coordinator._transition import ResultView, UnitView, transition
from mlc.errors import StateError
from mlc.work import WorkUnit, WorkUnitSpec

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "ReportOutcome",
    "apply_transitions",
    "extend_leases",
    "lease_work",
    "release_leases",
    "report_result",
    "results_of",
    "take_over_leases",
    "transition_unit",
    "unit_for_upload",
    "was_leased_to",
    "work_remaining",
]

DEFAULT_MAX_ATTEMPTS = 3


class ReportOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # these exact bytes were already received: nothing changes
    TOO_LATE = "too_late"  # the unit was already done or failed: kept out of the dataset


def lease_work(
    engine: Engine,
    owner: str,
    max_members: int,
    lease_seconds: float,
    experiment_id: int | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    queues: tuple[str, ...] | None = None,
    kernel_class: str | None = None,
) -> list[WorkUnit]:
    """Lease ready units (oldest first) until they hold about `max_members` networks.

    Only units of running experiments are leased (not paused, cancelled or finished ones); `queues`
    limits them to experiments in those queues (a CPU host does not get a GPU queue's work). A unit
    waiting for a replica goes only to an owner of its `replica_class` (`kernel_class`: the owner's,
    None where unknown) that never held it (homogeneous redundancy: two hosts, one kernel class).

    Expired leases are settled first, as the transitioner would (back to READY, or FAILED with their
    networks once `max_attempts` leases were handed out), so no unit is leased beyond its attempts.
    Units this same owner still holds (it restarted) are leased again: a renewed deadline, the same
    attempt.
    """
    now = utcnow()
    mine = and_(work_units.c.state == WUState.LEASED, work_units.c.lease_owner == owner)
    query = select(work_units.c.id, work_units.c.spec_json, work_units.c.state_blob, work_units.c.state)
    query = query.where(or_(work_units.c.state == WUState.READY, mine))
    running = select(experiments.c.id).where(experiments.c.state == ExperimentState.RUNNING)
    if queues is not None:
        running = running.where(experiments.c.queue.in_(queues))
    query = query.where(work_units.c.experiment_id.in_(running))
    held_before = select(leases.c.wu_id).where(leases.c.wu_id == work_units.c.id, leases.c.owner == owner)
    query = query.where(
        or_(
            work_units.c.replica_class.is_(None),
            mine,
            and_(work_units.c.replica_class == (kernel_class or ""), ~held_before.exists()),
        )
    )
    if experiment_id is not None:
        query = query.where(work_units.c.experiment_id == experiment_id)
    # PostgreSQL: rows another scheduler is leasing right now are skipped (FOR NO KEY UPDATE, so a
    # result being inserted for a unit does not hide it); SQLite: BEGIN IMMEDIATE already serialises
    # whole transactions (and ignores FOR UPDATE)
    query = query.order_by(work_units.c.seq).limit(max(1, max_members))
    query = query.with_for_update(skip_locked=True, key_share=True)
    with transaction(engine) as conn:
        _settle_expired(conn, now, max_attempts, experiment_id)
        chosen, renewed, n_members = [], set(), 0
        for row in conn.execute(query):
            spec = WorkUnitSpec.from_json(row.spec_json)
            if chosen and n_members + len(spec.members) > max_members:
                break
            chosen.append(WorkUnit(spec, row.state_blob))
            if row.state == WUState.LEASED:
                renewed.add(spec.wu_id)
            n_members += len(spec.members)
        for unit in chosen:
            again = unit.spec.wu_id in renewed
            if not again:
                _record_lease(conn, unit.spec.wu_id, owner, now)
            conn.execute(
                work_units.update()
                .where(work_units.c.id == unit.spec.wu_id)
                .values(
                    state=WUState.LEASED,
                    lease_owner=owner,
                    attempts=work_units.c.attempts + (0 if again else 1),
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    updated_at=now,
                )
            )
    return chosen


def _record_lease(conn: Connection, wu_id: str, owner: str, now: datetime) -> None:
    held = select(leases.c.wu_id).where(leases.c.wu_id == wu_id, leases.c.owner == owner)
    if conn.execute(held).first() is None:
        conn.execute(leases.insert().values(wu_id=wu_id, owner=owner, leased_at=now))


def was_leased_to(engine: Engine, wu_id: str, owner: str) -> bool:
    """Whether `owner` was ever given a lease on `wu_id` (only they may upload a result for it)."""
    with reading(engine) as conn:
        query = select(leases.c.wu_id).where(leases.c.wu_id == wu_id, leases.c.owner == owner)
        return conn.execute(query).first() is not None


def extend_leases(engine: Engine, owner: str, wu_ids: Iterable[str], lease_seconds: float) -> list[str]:
    """New deadlines, `lease_seconds` from now, for the units in `wu_ids` that `owner` still holds;
    returns those ids. A unit whose lease expired and went to another host is not given back: the
    worker learns that it is training for nothing and can stop."""
    now = utcnow()
    ids = sorted(set(wu_ids))
    held = and_(
        work_units.c.id.in_(ids), work_units.c.state == WUState.LEASED, work_units.c.lease_owner == owner
    )
    with transaction(engine) as conn:
        query = select(work_units.c.id).where(held).with_for_update(key_share=True)
        kept = conn.execute(query).scalars().all()
        if kept:
            conn.execute(
                work_units.update()
                .where(work_units.c.id.in_(kept))
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
            )
    return sorted(kept)


def release_leases(
    engine: Engine, owner: str, wu_ids: Iterable[str], max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> list[str]:
    """End `owner`'s leases on `wu_ids` now, as if they had expired: each unit goes back to the queue,
    or fails once it has had `max_attempts` leases; returns the ids released. For a holder that knows
    its training is lost (a crashed process, a lost cluster node), so the units need not wait out their
    deadline, and a unit that kills every process training it still ends failed."""
    now = utcnow()
    ids = sorted(set(wu_ids))
    held = and_(
        work_units.c.id.in_(ids), work_units.c.state == WUState.LEASED, work_units.c.lease_owner == owner
    )
    with transaction(engine) as conn:
        released = conn.execute(select(work_units.c.id).where(held).with_for_update(key_share=True))
        released_ids = sorted(released.scalars().all())
        if released_ids:
            conn.execute(
                work_units.update()
                .where(work_units.c.id.in_(released_ids))
                .values(lease_expires_at=now, updated_at=now)
            )
        for wu_id in released_ids:
            transition_unit(conn, wu_id, now, max_attempts)
    return released_ids


def take_over_leases(
    engine: Engine, experiment_id: int, owner_prefix: str, owner: str, lease_seconds: float
) -> int:
    """Make `owner` the holder of the experiment's leased units held by any owner named
    `owner_prefix`..., itself included, with a new deadline; returns how many. For an owner that
    knows the earlier holders are gone (a local run, alone in its workdir, after an interrupted run
    under this or another path or host name): it then re-leases them as its own, the same attempt,
    where waiting out their leases would stall it for a day and then count an attempt for each."""
    now = utcnow()
    held = and_(
        work_units.c.experiment_id == experiment_id,
        work_units.c.state == WUState.LEASED,
        work_units.c.lease_owner.startswith(owner_prefix, autoescape=True),
    )
    renewed = {
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "updated_at": now,
    }
    with transaction(engine) as conn:
        return conn.execute(work_units.update().where(held).values(**renewed)).rowcount


def _settle_expired(conn: Connection, now: datetime, max_attempts: int, experiment_id: int | None) -> None:
    query = select(work_units.c.id).where(
        work_units.c.state == WUState.LEASED, work_units.c.lease_expires_at <= now
    )
    if experiment_id is not None:
        query = query.where(work_units.c.experiment_id == experiment_id)
    for wu_id in conn.execute(query.with_for_update(skip_locked=True, key_share=True)).scalars().all():
        transition_unit(conn, wu_id, now, max_attempts)


def report_result(
    engine: Engine, wu_id: str, payload: bytes, reporter: str, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> ReportOutcome:
    """Store an uploaded result for validation. Re-sending the same bytes is harmless.

    A report from the unit's lease holder ends that lease (the holder is done with it); a report from
    anyone else (an earlier holder whose lease expired) leaves the current lease running.
    """
    digest = hashlib.sha256(payload).hexdigest()
    now = utcnow()
    with transaction(engine) as conn:
        row = conn.execute(
            select(work_units.c.state, work_units.c.lease_owner).where(work_units.c.id == wu_id)
        ).first()
        if row is None:
            raise StateError(f"no work unit {wu_id!r}: results are only taken for issued work")
        if _seen(conn, wu_id, digest):
            return ReportOutcome.DUPLICATE
        if row.state in (WUState.DONE, WUState.FAILED, WUState.VALID, WUState.WITHDRAWN):
            return ReportOutcome.TOO_LATE
        try:
            with conn.begin_nested():  # a savepoint: the same bytes may be landing beside us
                conn.execute(
                    results.insert().values(
                        wu_id=wu_id,
                        sha256=digest,
                        payload=payload,
                        verdict=Verdict.PENDING,
                        reporter=reporter,
                        received_at=now,
                    )
                )
        except IntegrityError:
            if _seen(conn, wu_id, digest):  # (wu_id, sha256) is unique: they were first
                return ReportOutcome.DUPLICATE
            raise
        if row.lease_owner == reporter:
            conn.execute(
                work_units.update()
                .where(
                    work_units.c.id == wu_id,
                    work_units.c.lease_owner == reporter,
                    work_units.c.state.in_([WUState.LEASED, WUState.REPORTED]),
                )
                .values(lease_expires_at=now)
            )
        transition_unit(conn, wu_id, now, max_attempts)
    return ReportOutcome.ACCEPTED


def _seen(conn: Connection, wu_id: str, digest: str) -> bool:
    query = select(results.c.id).where(results.c.wu_id == wu_id, results.c.sha256 == digest)
    return conn.execute(query).first() is not None


def transition_unit(
    conn: Connection, wu_id: str, now: datetime, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> WUState:
    """Load one unit (locking its row) and its results, apply `transition`, return the state it ends in.

    The caller's transaction commits the change; FAILED fails the unit's networks with it.
    """
    # FOR NO KEY UPDATE (PostgreSQL): a concurrent transition waits and then sees this one's outcome,
    # while inserting a result (which takes KEY SHARE on its unit) does not deadlock against it
    unit = conn.execute(
        select(work_units).where(work_units.c.id == wu_id).with_for_update(key_share=True)
    ).one()
    views = [
        ResultView(Verdict(r.verdict), r.reason, r.training_sha256, r.reporter)
        for r in conn.execute(
            select(results.c.verdict, results.c.reason, results.c.training_sha256, results.c.reporter)
            .where(results.c.wu_id == wu_id)
            .order_by(results.c.id)
        )
    ]
    view = UnitView(WUState(unit.state), unit.attempts, unit.lease_expires_at, unit.quorum)
    change = transition(view, views, now, max_attempts)
    if change is None:
        return WUState(unit.state)
    values: dict[str, object] = {"state": change.state, "updated_at": now}
    if change.error is not None:
        values["error"] = change.error
    if change.state in (WUState.READY, WUState.FAILED):
        values.update(lease_owner=None, lease_expires_at=None)
    conn.execute(work_units.update().where(work_units.c.id == wu_id).values(**values))
    if change.state == WUState.FAILED:
        spec = WorkUnitSpec.from_json(unit.spec_json)
        conn.execute(
            networks.update()
            .where(
                networks.c.experiment_id == unit.experiment_id,
                networks.c.net_id.in_([m.net_id for m in spec.members]),
            )
            .values(state=NetworkState.FAILED)
        )
        mark_finished_if_complete(conn, unit.experiment_id, now)
    return change.state


def apply_transitions(engine: Engine, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> int:
    """The transitioner's pass: expire leases, retry or fail units whose results were all rejected,
    and take the result of a unit waiting for a replica that no host can give any more."""
    now = utcnow()
    with transaction(engine) as conn:
        let_go = accept_unreplicable(conn, now)
        for wu_id in let_go:
            transition_unit(conn, wu_id, now, max_attempts)
    with reading(engine) as conn:
        ids: Iterable[str] = (
            conn.execute(
                select(work_units.c.id).where(
                    or_(
                        and_(work_units.c.state == WUState.LEASED, work_units.c.lease_expires_at <= now),
                        work_units.c.state == WUState.REPORTED,
                    )
                )
            )
            .scalars()
            .all()
        )
    changed = len(let_go)
    for wu_id in ids:
        with transaction(engine) as conn:
            before = conn.execute(select(work_units.c.state).where(work_units.c.id == wu_id)).scalar()
            changed += transition_unit(conn, wu_id, now, max_attempts) != before
    return changed


def work_remaining(engine: Engine, queues: tuple[str, ...] | None = None) -> bool:
    """Whether running experiments (in `queues`, where given) still have units that are or will be
    handed out: ready, leased, or awaiting validation or assimilation (which may continue them)."""
    open_states = (WUState.READY, WUState.LEASED, WUState.REPORTED, WUState.VALID)
    running = select(experiments.c.id).where(experiments.c.state == ExperimentState.RUNNING)
    if queues is not None:
        running = running.where(experiments.c.queue.in_(queues))
    query = select(work_units.c.id).where(
        work_units.c.state.in_(open_states), work_units.c.experiment_id.in_(running)
    )
    with reading(engine) as conn:
        return conn.execute(query.limit(1)).first() is not None


def unit_for_upload(engine: Engine, wu_id: str) -> tuple[WorkUnitSpec, int | None] | None:
    """A unit's spec and its layout's size (None where unrecorded), or None for an unknown unit: what
    an upload is checked against before it is stored."""
    with reading(engine) as conn:
        row = conn.execute(
            select(work_units.c.spec_json, experiments.c.n_params)
            .join(experiments, experiments.c.id == work_units.c.experiment_id)
            .where(work_units.c.id == wu_id)
        ).first()
    return None if row is None else (WorkUnitSpec.from_json(row.spec_json), row.n_params)


def results_of(engine: Engine, wu_id: str, reporter: str) -> list[tuple[str, str, str | None]]:
    """(sha256, verdict, reason) of each result `reporter` uploaded for `wu_id`, oldest first."""
    with reading(engine) as conn:
        rows = conn.execute(
            select(results.c.sha256, results.c.verdict, results.c.reason)
            .where(results.c.wu_id == wu_id, results.c.reporter == reporter)
            .order_by(results.c.id)
        ).all()
    return [(r.sha256, r.verdict, r.reason) for r in rows]
