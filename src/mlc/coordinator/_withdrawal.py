"""Retroactive re-issue: when a host is found untrusted, what it trained that nothing confirmed is
taken back out of the experiment, even from a dataset it was assimilated into long ago.

A unit's accepted result is *confirmed* when the server replayed every one of its segments (a replica
on the server's kernel class) or a replica host's result agreed with it bit for bit; a sampled
segment or a re-evaluation alone is not that. Every unconfirmed unit of the host is voided (its
credit revoked) and withdrawn with everything built on it: its networks go back to epoch 0 with
fresh units (their seeds give them the same start: the unit's start state was not kept), the live
units that continue them are withdrawn, and the networks already finished are queued in
`withdrawals` for the assimilator, which moves their records out of the dataset's staging and says
so in its manifest (`DatasetWriter.withdraw`). Everything here is one transaction with the host's
distrust, so a crash leaves either none of it or all of it.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, Engine, select

from mlc.coordinator._db import reading, transaction, utcnow
from mlc.coordinator._experiments import get_experiment_by_id, retrain_from_seed
from mlc.coordinator._schema import (
    NetworkState,
    Verdict,
    WUState,
    networks,
    results,
    withdrawals,
    work_units,
)
from mlc.work import WorkUnitSpec

__all__ = ["apply_withdrawals", "withdraw_unconfirmed"]

_LIVE = (WUState.READY, WUState.LEASED, WUState.REPORTED, WUState.VALID)


def withdraw_unconfirmed(conn: Connection, owner: str, why: str, now: datetime) -> list[str]:
    """Void `owner`'s accepted results that nothing confirmed and withdraw what was built on them
    (see the module's docstring); returns the withdrawn units' ids."""
    accepted = conn.execute(
        select(
            results.c.id,
            results.c.wu_id,
            results.c.replayed,
            results.c.training_sha256,
            work_units.c.spec_json,
            work_units.c.experiment_id,
            work_units.c.seq,
        )
        .join(work_units, work_units.c.id == results.c.wu_id)
        .where(
            results.c.reporter == owner,
            results.c.verdict == Verdict.VALID,
            work_units.c.state == WUState.DONE,
        )
        .order_by(work_units.c.seq)
    ).all()
    tainted = [r for r in accepted if not _confirmed(conn, r, owner)]
    by_experiment: dict[int, list[tuple[str, WorkUnitSpec]]] = {}
    for r in tainted:
        conn.execute(
            results.update()
            .where(results.c.id == r.id)
            .values(
                verdict=Verdict.INVALID,
                reason=f"voided after assimilation: its host became untrusted ({why})",
            )
        )
        by_experiment.setdefault(r.experiment_id, []).append((r.wu_id, WorkUnitSpec.from_json(r.spec_json)))
    withdrawn: list[str] = []
    for experiment_id, units in by_experiment.items():
        withdrawn += _withdraw(conn, experiment_id, units, owner, why, now)
    return withdrawn


def _confirmed(conn: Connection, row: object, owner: str) -> bool:
    spec = WorkUnitSpec.from_json(row.spec_json)  # type: ignore[attr-defined]
    if spec.segments > 1 and row.replayed == spec.segments:  # type: ignore[attr-defined]
        return True
    agreeing = select(results.c.id).where(
        results.c.wu_id == row.wu_id,  # type: ignore[attr-defined]
        results.c.reporter != owner,
        results.c.verdict == Verdict.VALID,
        results.c.training_sha256 == row.training_sha256,  # type: ignore[attr-defined]
    )
    return row.training_sha256 is not None and conn.execute(agreeing.limit(1)).first() is not None  # type: ignore[attr-defined]


def _withdraw(
    conn: Connection,
    experiment_id: int,
    units: list[tuple[str, WorkUnitSpec]],
    owner: str,
    why: str,
    now: datetime,
) -> list[str]:
    """Withdraw `units` (the tainted ones of one experiment) and what was built on them."""
    affected = sorted({m.net_id for _, spec in units for m in spec.members})
    reason = f"trained in part by {owner}, which became untrusted ({why}); retrained from its seed"
    rows = conn.execute(
        select(networks.c.net_id, networks.c.state, networks.c.work_units).where(
            networks.c.experiment_id == experiment_id, networks.c.net_id.in_(affected)
        )
    ).all()
    for row in rows:
        if row.state == NetworkState.FINISHED:
            conn.execute(
                withdrawals.insert().values(
                    experiment_id=experiment_id,
                    net_id=row.net_id,
                    work_units=row.work_units,
                    reason=reason,
                    created_at=now,
                )
            )
    live = conn.execute(
        select(work_units.c.id, work_units.c.spec_json).where(
            work_units.c.experiment_id == experiment_id, work_units.c.state.in_(_LIVE)
        )
    ).all()
    built_on = [
        u.id for u in live if {m.net_id for m in WorkUnitSpec.from_json(u.spec_json).members} & set(affected)
    ]
    withdrawn = sorted({*(wu_id for wu_id, _ in units), *built_on})
    conn.execute(
        work_units.update()
        .where(work_units.c.id.in_(withdrawn))
        .values(
            state=WUState.WITHDRAWN, error=reason, lease_owner=None, lease_expires_at=None, updated_at=now
        )
    )
    conn.execute(
        results.update()
        .where(results.c.wu_id.in_(built_on), results.c.verdict == Verdict.PENDING)
        .values(verdict=Verdict.SUPERSEDED, reason="superseded: its unit was withdrawn", payload=None)
    )
    retrain_from_seed(conn, get_experiment_by_id(conn, experiment_id), affected, together=True)
    return withdrawn


def apply_withdrawals(engine: Engine, writer_for) -> int:  # type: ignore[no-untyped-def]
    """The dataset's side of pending withdrawals: each record still staged from the withdrawn units
    is moved out (`DatasetWriter.withdraw`, idempotent); returns how many records were withdrawn.
    The assimilator runs this before staging anything, so a retrained network never meets the
    record it replaces."""
    with reading(engine) as conn:
        pending = conn.execute(
            select(withdrawals).where(withdrawals.c.applied_at.is_(None)).order_by(withdrawals.c.id)
        ).all()
    done = 0
    for row in pending:
        with reading(engine) as conn:
            exp = get_experiment_by_id(conn, row.experiment_id)
        done += writer_for(exp).withdraw(row.net_id, json.loads(row.work_units), row.reason)
        with transaction(engine) as conn:
            conn.execute(withdrawals.update().where(withdrawals.c.id == row.id).values(applied_at=utcnow()))
    return done
