"""Handing out work and taking results back: leases, idempotent reports, and the transitioner pass.

Every call is one transaction. A lease is a promise with a deadline: when it passes, the transitioner
puts the unit back in the queue (or fails it after `max_attempts`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, Engine, and_, or_, select

from mlc.coordinator._db import transaction, utcnow
from mlc.coordinator._schema import NetworkState, Verdict, WUState, networks, results, work_units
from mlc.coordinator._transition import ResultView, UnitView, transition
from mlc.errors import StateError
from mlc.work import WorkUnit, WorkUnitSpec

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "ReportOutcome",
    "apply_transitions",
    "lease_work",
    "report_result",
    "transition_unit",
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
) -> list[WorkUnit]:
    """Lease ready units (oldest first) until they hold about `max_members` networks.

    Units whose lease expired, and units this same owner already held (it restarted), are leased too.
    """
    now = utcnow()
    leasable = or_(
        work_units.c.state == WUState.READY,
        and_(
            work_units.c.state == WUState.LEASED,
            or_(work_units.c.lease_owner == owner, work_units.c.lease_expires_at <= now),
        ),
    )
    query = select(work_units.c.id, work_units.c.spec_json, work_units.c.state_blob).where(leasable)
    if experiment_id is not None:
        query = query.where(work_units.c.experiment_id == experiment_id)
    query = query.order_by(work_units.c.seq).limit(max(1, max_members))
    with transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        chosen, n_members = [], 0
        for row in conn.execute(query):
            spec = WorkUnitSpec.from_json(row.spec_json)
            if chosen and n_members + len(spec.members) > max_members:
                break
            chosen.append(WorkUnit(spec, row.state_blob))
            n_members += len(spec.members)
        for unit in chosen:
            conn.execute(
                work_units.update()
                .where(work_units.c.id == unit.spec.wu_id)
                .values(
                    state=WUState.LEASED,
                    lease_owner=owner,
                    attempts=work_units.c.attempts + 1,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    updated_at=now,
                )
            )
    return chosen


def report_result(engine: Engine, wu_id: str, payload: bytes, reporter: str) -> ReportOutcome:
    """Store an uploaded result for validation. Re-sending the same bytes is harmless."""
    digest = hashlib.sha256(payload).hexdigest()
    with transaction(engine) as conn:
        row = conn.execute(select(work_units.c.state).where(work_units.c.id == wu_id)).first()
        if row is None:
            raise StateError(f"no work unit {wu_id!r}: results are only taken for issued work")
        seen = conn.execute(select(results.c.id).where(results.c.wu_id == wu_id, results.c.sha256 == digest))
        if seen.first() is not None:
            return ReportOutcome.DUPLICATE
        if row.state in (WUState.DONE, WUState.FAILED, WUState.VALID):
            return ReportOutcome.TOO_LATE
        conn.execute(
            results.insert().values(
                wu_id=wu_id,
                sha256=digest,
                payload=payload,
                verdict=Verdict.PENDING,
                reporter=reporter,
                received_at=utcnow(),
            )
        )
        transition_unit(conn, wu_id, utcnow())
    return ReportOutcome.ACCEPTED


def transition_unit(
    conn: Connection, wu_id: str, now: datetime, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> WUState:
    """Load one unit and its results, apply `transition`, and return the state it ends in."""
    unit = conn.execute(select(work_units).where(work_units.c.id == wu_id)).one()
    views = [
        ResultView(Verdict(r.verdict), r.reason)
        for r in conn.execute(
            select(results.c.verdict, results.c.reason).where(results.c.wu_id == wu_id).order_by(results.c.id)
        )
    ]
    change = transition(
        UnitView(WUState(unit.state), unit.attempts, unit.lease_expires_at), views, now, max_attempts
    )
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
            .where(networks.c.net_id.in_([m.net_id for m in spec.members]))
            .values(state=NetworkState.FAILED)
        )
    return change.state


def apply_transitions(engine: Engine, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> int:
    """The transitioner's pass: expire leases and retry or fail units whose results were all rejected."""
    now = utcnow()
    with engine.connect() as conn:
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
    changed = 0
    for wu_id in ids:
        with transaction(engine) as conn:
            before = conn.execute(select(work_units.c.state).where(work_units.c.id == wu_id)).scalar()
            changed += transition_unit(conn, wu_id, now, max_attempts) != before
    return changed
