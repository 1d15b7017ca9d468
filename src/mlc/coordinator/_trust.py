"""Host trust: a host earns it by a run of valid results and loses it for good with its first invalid
one: a result that passed the upload check (well formed, for its own unit) and that the server's data
then contradicts, by re-evaluation or by segment replay (weights that do not give their claimed loss,
training on other targets, an invented history, skipped epochs), or an upload of another unit's
result. Unlike a BOINC task, a trained network has no benign invalid result: honest hosts of other
hardware stay inside the tolerances, which were measured for that. An untrusted host gets no more
work, and every result of its that nothing has built on yet (pending, or valid but not assimilated) is
voided, so its units are trained again elsewhere; so is every assimilated one that no full replay or
replica confirmed, with what was built on it (`_withdrawal`: retroactive re-issue).
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, and_, func, select

from mlc.coordinator._db import reading, transaction, utcnow
from mlc.coordinator._hosts import host_id_of, host_owner
from mlc.coordinator._scheduler import DEFAULT_MAX_ATTEMPTS, transition_unit
from mlc.coordinator._schema import HostTrust, Verdict, WUState, hosts, results, work_units
from mlc.coordinator._withdrawal import withdraw_unconfirmed

__all__ = ["TRUSTED_AFTER", "distrust_reporter", "is_trusted", "note_valid_result"]

TRUSTED_AFTER = 3  # valid results in a row that make a new host trusted

def is_trusted(engine: Engine, reporter: str | None) -> bool:
    """Whether `reporter` is trusted: a local run or Ray task always, a host once it earned it."""
    host_id = host_id_of(reporter)
    if host_id is None:
        return True
    with reading(engine) as conn:
        return conn.execute(select(hosts.c.trust).where(hosts.c.id == host_id)).scalar() == HostTrust.TRUSTED


def note_valid_result(conn: Connection, reporter: str | None) -> None:
    """A valid result of `reporter`: a new host with TRUSTED_AFTER valid results becomes trusted."""
    host_id = host_id_of(reporter)
    if host_id is None:
        return
    valid = conn.execute(
        select(func.count()).where(results.c.reporter == reporter, results.c.verdict == Verdict.VALID)
    ).scalar()
    if (valid or 0) >= TRUSTED_AFTER:
        conn.execute(
            hosts.update()
            .where(hosts.c.id == host_id, hosts.c.trust == HostTrust.NEW)
            .values(trust=HostTrust.TRUSTED)
        )


def distrust_reporter(
    engine: Engine, reporter: str | None, why: str, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> int:
    """Mark `reporter`'s host untrusted, void its results that nothing is built on yet, and withdraw
    its assimilated ones that nothing confirmed; returns how many units go back to the queue (or
    fail, out of attempts) or were withdrawn."""
    host_id = host_id_of(reporter)
    if host_id is None:
        return 0
    now = utcnow()
    open_units = select(work_units.c.id).where(
        work_units.c.state.in_((WUState.READY, WUState.LEASED, WUState.REPORTED, WUState.VALID))
    )  # READY: a unit waiting for a replica of this host's result
    voidable = and_(
        results.c.reporter == host_owner(host_id),
        results.c.verdict.in_((Verdict.PENDING, Verdict.VALID)),
        results.c.wu_id.in_(open_units),
    )
    with transaction(engine) as conn:
        conn.execute(hosts.update().where(hosts.c.id == host_id).values(trust=HostTrust.UNTRUSTED))
        units = sorted(set(conn.execute(select(results.c.wu_id).where(voidable)).scalars()))
        conn.execute(
            results.update()
            .where(voidable)
            .values(
                verdict=Verdict.INVALID, reason=f"voided: its host became untrusted ({why})", payload=None
            )
        )
        leased = and_(work_units.c.lease_owner == host_owner(host_id), work_units.c.state == WUState.LEASED)
        conn.execute(work_units.update().where(leased).values(lease_expires_at=now))  # its leases end now
        for wu_id in units:  # judged afresh: whoever trains it next decides on a replica again
            conn.execute(
                work_units.update()
                .where(work_units.c.id == wu_id)
                .values(state=WUState.REPORTED, quorum=1, replica_class=None)
            )
            transition_unit(conn, wu_id, now, max_attempts)
        withdrawn = withdraw_unconfirmed(conn, host_owner(host_id), why, now)
    return len(units) + len(withdrawn)
