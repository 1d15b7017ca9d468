"""Replication on a second host of the same kernel class, at an adaptive per-host rate (BOINC's
adaptive replication with homogeneous redundancy), and the settlement of a disagreement by a third.

Segment replay checks one sampled segment of a trusted host's unit on the server; a replica checks
the whole unit on a volunteer's machine, at no cost to the server. Two honest hosts of one kernel
class (device kind + kernel path + instruction set) produce bit-identical training (measured:
benchmarks/replica_agreement.py), so replicas agree when their `training_sha256` is equal: no
tolerance to argue about. Across classes they would differ in the last bits, so a replica only ever
goes to a host of the first result's class; where no other host of that class has been seen
recently, the unit is not replicated (its segment replay stands).

The rate: a host is replicated on every unit until `run` of its replicated results agreed in a row;
the rate then halves with every further `run` agreements, down to `floor`; a disagreement resets it
to every unit. A host whose result is outvoted (two other hosts agree against it) is untrusted, as for
any invalid result (`_trust.distrust_reporter`), retroactively.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, select

from mlc.coordinator._hosts import host_id_of, host_owner
from mlc.coordinator._schema import HostTrust, Verdict, WUState, hosts, leases, results, work_units

__all__ = [
    "DEFAULT_REPLICATION",
    "accept_unreplicable",
    "PEER_SEEN_WITHIN",
    "ReplicationPolicy",
    "maybe_replicate",
    "settle_replicas",
]

PEER_SEEN_WITHIN = timedelta(days=1)  # a host of the class seen this recently may take the replica


@dataclass(frozen=True)
class ReplicationPolicy:
    """`run`: agreeing replicas in a row before a host's rate first halves (0: no probation);
    `floor`: the lowest rate (0 with run 0: replication off; 1: every unit replicated)."""

    run: int = 5
    floor: float = 0.05

    def __post_init__(self) -> None:
        if self.run < 0 or not 0 <= self.floor <= 1:
            raise ValueError(
                f"replication run must be >= 0 and floor in [0, 1], got {self.run}, {self.floor}"
            )

    def rate(self, streak: int) -> float:
        """The fraction of a host's units sent to a replica after `streak` agreements in a row."""
        if self.run == 0:
            return self.floor
        return max(self.floor, 0.5 ** (streak // self.run))


DEFAULT_REPLICATION = ReplicationPolicy()


def maybe_replicate(
    conn: Connection,
    wu_id: str,
    reporter: str | None,
    kernel_class: str,
    policy: ReplicationPolicy,
    now: datetime,
    random: Callable[[], float] = lambda: secrets.randbelow(2**53) / 2**53,
) -> bool:
    """A volunteer host's first valid result for `wu_id`: send the unit to a replica (quorum 2, of
    this kernel class) with the host's current rate, where another host of the class is around;
    returns whether it was. Local and Ray results (our own executors) are never replicated."""
    host_id = host_id_of(reporter)
    unit = conn.execute(select(work_units.c.quorum).where(work_units.c.id == wu_id)).one()
    if host_id is None or unit.quorum > 1 or not kernel_class:
        return False
    streak = conn.execute(select(hosts.c.agree_streak).where(hosts.c.id == host_id)).scalar() or 0
    if random() >= policy.rate(streak):
        return False
    peer = select(hosts.c.id).where(
        hosts.c.id != host_id,
        hosts.c.kernel_class == kernel_class,
        hosts.c.trust != HostTrust.UNTRUSTED,
        hosts.c.last_seen_at >= now - PEER_SEEN_WITHIN,
    )
    if conn.execute(peer.limit(1)).first() is None:
        return False
    conn.execute(
        work_units.update().where(work_units.c.id == wu_id).values(quorum=2, replica_class=kernel_class)
    )
    return True


def settle_replicas(conn: Connection, wu_id: str) -> list[tuple[str, str]]:
    """Compare the valid results of a replicated unit: where `quorum` distinct hosts agree, the
    others are outvoted (marked invalid here; returned as (reporter, why) for the caller to distrust)
    and the agreeing hosts' streaks grow; where two disagree and none has its quorum, every host
    involved goes back to full replication, and the unit waits for a third host to settle it."""
    quorum = conn.execute(select(work_units.c.quorum).where(work_units.c.id == wu_id)).scalar() or 1
    valid = conn.execute(
        select(results.c.id, results.c.reporter, results.c.training_sha256)
        .where(results.c.wu_id == wu_id, results.c.verdict == Verdict.VALID)
        .order_by(results.c.id)
    ).all()
    if quorum < 2 or len({r.reporter for r in valid}) < 2:
        return []
    groups: dict[str, set[str]] = {}
    for r in valid:
        groups.setdefault(r.training_sha256 or f"#{r.id}", set()).add(r.reporter)
    winner = next((digest for digest, who in groups.items() if len(who) >= quorum), None)
    if winner is None:  # a disagreement: nobody is believed on their own until a third host settles it
        _set_streaks(conn, {r.reporter for r in valid}, reset=True)
        return []
    agreed = sorted(groups[winner])
    _set_streaks(conn, set(agreed), reset=False)
    outvoted = []
    for r in valid:
        if (r.training_sha256 or f"#{r.id}") != winner:
            why = f"outvoted: its training differs from that of {' and '.join(agreed)}, which agree"
            conn.execute(
                results.update()
                .where(results.c.id == r.id)
                .values(verdict=Verdict.INVALID, reason=why, payload=None)
            )
            outvoted.append((r.reporter, why))
    return outvoted


def accept_unreplicable(conn: Connection, now: datetime) -> list[str]:
    """Units waiting for a replica that no host can give any more (every other host of the class is
    untrusted, gone for a day, or held the unit already): where their valid results agree, the
    replication is dropped and the result taken on its own checks (quorum back to 1); a disagreement
    keeps waiting for a third host of the class. Returns the ids let go."""
    waiting = conn.execute(
        select(work_units.c.id, work_units.c.replica_class).where(
            work_units.c.state == WUState.READY, work_units.c.quorum > 1
        )
    ).all()
    released = []
    for unit in waiting:
        held = set(conn.execute(select(leases.c.owner).where(leases.c.wu_id == unit.id)).scalars())
        peers = conn.execute(
            select(hosts.c.id).where(
                hosts.c.kernel_class == unit.replica_class,
                hosts.c.trust != HostTrust.UNTRUSTED,
                hosts.c.last_seen_at >= now - PEER_SEEN_WITHIN,
            )
        ).scalars()
        if any(host_owner(peer) not in held for peer in peers):
            continue
        digests = conn.execute(
            select(results.c.training_sha256).where(
                results.c.wu_id == unit.id, results.c.verdict == Verdict.VALID
            )
        ).scalars()
        if len(set(digests)) == 1:
            conn.execute(
                work_units.update().where(work_units.c.id == unit.id).values(quorum=1, replica_class=None)
            )
            released.append(unit.id)
    return released


def _set_streaks(conn: Connection, reporters: set[str], *, reset: bool) -> None:
    ids = [h for h in map(host_id_of, reporters) if h is not None]
    if ids:
        value = 0 if reset else hosts.c.agree_streak + 1
        conn.execute(hosts.update().where(and_(hosts.c.id.in_(ids))).values(agree_streak=value))
