"""The work-unit state machine as a pure function: (unit, its results, now) -> the change to make.

No database here: daemons load rows, call `transition`, and apply what it returns in one transaction,
so the rules are tested exhaustively without I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mlc.coordinator._schema import Verdict, WUState

__all__ = ["Change", "ResultView", "UnitView", "agreeing", "transition"]


@dataclass(frozen=True)
class UnitView:
    state: WUState
    attempts: int  # leases handed out so far (a holder renewing its own lease is the same attempt)
    # LEASED: the holder's deadline (None: none). REPORTED: the deadline of the lease still running
    # beside the result (a holder's own report ends its lease at once); None when there is no lease.
    lease_expires_at: datetime | None
    quorum: int = 1  # agreeing valid results of distinct hosts it needs (2: sent to a replica host)


@dataclass(frozen=True)
class ResultView:
    verdict: Verdict
    reason: str | None = None
    # a valid result's training digest (replicas that agree share it; None: its own) and its host
    group: str | None = None
    reporter: str | None = None


def agreeing(results: Sequence[ResultView]) -> int:
    """The most distinct hosts whose valid results agree (share a training digest)."""
    groups: dict[str, set[str | None]] = {}
    for k, r in enumerate(results):
        if r.verdict == Verdict.VALID:
            groups.setdefault(r.group or f"#{k}", set()).add(r.reporter if r.group else f"#{k}")
    return max((len(hosts) for hosts in groups.values()), default=0)


@dataclass(frozen=True)
class Change:
    state: WUState
    error: str | None = None


def transition(
    unit: UnitView, results: Sequence[ResultView], now: datetime, max_attempts: int
) -> Change | None:
    """The state `unit` should move to, or None when it should stay as it is.

    A valid result wins at once, whoever sent it (a late answer from an earlier lease is as good as
    any), once `quorum` distinct hosts agree on it: a unit sent to a replica waits, back in the queue
    for another host of the class, until a second result agrees (a third settles a disagreement);
    valid results do not count against its attempts. A rejected result only records its reason while
    a live lease remains: the unit goes back to LEASED for the worker that holds it, and is retried (or
    failed) only once no lease is live.
    """
    if unit.state in (WUState.DONE, WUState.FAILED, WUState.WITHDRAWN):
        return None
    verdicts = [r.verdict for r in results]
    if agreeing(results) >= unit.quorum:
        return None if unit.state == WUState.VALID else Change(WUState.VALID)
    if Verdict.PENDING in verdicts:
        return None if unit.state == WUState.REPORTED else Change(WUState.REPORTED)
    n_valid = verdicts.count(Verdict.VALID)
    if n_valid:  # judged valid, but not yet confirmed by a replica
        why = f"waiting for a replica: {agreeing(results)} of {unit.quorum} hosts agree"
        live = unit.lease_expires_at is not None and unit.lease_expires_at > now
        if live:
            return None if unit.state == WUState.LEASED else Change(WUState.LEASED, why)
        if unit.state == WUState.READY:
            return None
        if n_valid == 1 and unit.attempts - n_valid >= max_attempts:  # no replica came: take the one
            return Change(WUState.VALID, f"{why}; no replica after {unit.attempts} leases: accepted alone")
        return _retry_or_fail(unit, why, max_attempts, n_valid)
    if unit.state == WUState.LEASED:
        expired = unit.lease_expires_at is not None and unit.lease_expires_at <= now
        if not expired:
            return None
        return _retry_or_fail(unit, f"lease expired after attempt {unit.attempts}", max_attempts)
    if unit.state in (WUState.REPORTED, WUState.VALID):  # every result was rejected
        rejected = [r.reason for r in results if r.verdict == Verdict.INVALID]
        why = f"result rejected: {rejected[-1] if rejected else 'no result'}"
        if unit.lease_expires_at is not None and unit.lease_expires_at > now:
            return Change(WUState.LEASED, why)  # its holder is still at work: wait for it
        return _retry_or_fail(unit, why, max_attempts)
    return None


def _retry_or_fail(unit: UnitView, why: str, max_attempts: int, n_valid: int = 0) -> Change:
    if unit.attempts - n_valid >= max_attempts:
        return Change(WUState.FAILED, f"{why}; gave up after {unit.attempts} attempts")
    return Change(WUState.READY, why)
