"""The validator daemon's pass: judge every pending result against the server's own data.

The expensive re-evaluation runs outside any transaction; the verdict and the unit's transition are
then written together, and only if the result is still pending (another validator may have won).
Payloads are loaded one at a time, so a long queue of uploads is never all in memory.
"""

from __future__ import annotations

import secrets
from typing import NamedTuple

from sqlalchemy import Connection, Engine, select

from mlc.coordinator._db import reading, transaction, utcnow
from mlc.coordinator._hosts import host_id_of
from mlc.coordinator._replication import (
    DEFAULT_REPLICATION,
    ReplicationPolicy,
    maybe_replicate,
    settle_replicas,
)
from mlc.coordinator._scheduler import DEFAULT_MAX_ATTEMPTS, transition_unit
from mlc.coordinator._schema import Verdict, WUState, hosts, results, work_units
from mlc.coordinator._serverdata import ServerData
from mlc.coordinator._trust import distrust_reporter, is_trusted, note_valid_result
from mlc.errors import ResultRejected
from mlc.work import WorkUnitResult, WorkUnitSpec, validate_result

__all__ = ["Judgement", "judge", "segments_to_replay", "validate_pending"]

_ANSWERED = (WUState.VALID, WUState.DONE)  # units whose answer is in: further results are not judged


class Judgement(NamedTuple):
    verdict: Verdict
    reason: str | None
    replayed: int  # segments replayed
    kernel_class: str | None = None  # of a valid result, as it says
    training_sha256: str | None = None  # of a valid result: what replicas are compared by


def judge(
    spec: WorkUnitSpec,
    payload: bytes,
    server: ServerData,
    start_blob: bytes | None = None,
    replay_all: bool = False,
) -> Judgement:
    """Re-evaluate the result and, for a unit cut into segments, replay one segment chosen at
    random after the upload (the worker cannot know which), or every segment (`replay_all`: a host
    not yet trusted), from `start_blob` (the unit's continuation state; None: the networks'
    initial weights) where it is the first."""
    replayed = 0
    try:
        result = WorkUnitResult.from_bytes(payload)
        population = server.population(spec.experiment, spec.model_settings)
        validate_result(spec, result, population, server.arrays(spec.experiment))
        for segment in segments_to_replay(spec.segments, replay_all):
            _replay(spec, result, server, start_blob, segment)
            replayed += 1
    except ResultRejected as exc:
        return Judgement(Verdict.INVALID, str(exc), replayed)
    return Judgement(Verdict.VALID, None, replayed, result.provenance.kernel_class, result.training_sha256())


def segments_to_replay(n_segments: int, replay_all: bool, randbelow=secrets.randbelow) -> list[int]:  # type: ignore[no-untyped-def]
    """The segments the validator replays: all of them for a host not yet trusted, else one chosen
    at random after the upload (so the worker cannot know which); none for an uncut unit (its
    re-evaluation is the check). `randbelow` is replaceable for simulations of this policy."""
    if n_segments <= 1:
        return []
    return list(range(n_segments)) if replay_all else [randbelow(n_segments)]


def _replay(
    spec: WorkUnitSpec, result: WorkUnitResult, server: ServerData, start_blob: bytes | None, segment: int
) -> None:
    import torch

    from mlc.train import PopulationState
    from mlc.work import decode_state, kernel_class, replay_segment

    population = server.replay_population(spec.experiment, spec.model_settings)
    if start_blob is None:
        start = PopulationState.fresh(population.init([m.net_seed for m in spec.members]))
    else:
        start = decode_state(start_blob, spec.parent or "")
    exact = result.provenance.kernel_class == kernel_class(torch.device("cpu"), population.kernels)
    replay_segment(spec, result, start, segment, population, server.arrays(spec.experiment), exact=exact)


def validate_pending(
    engine: Engine,
    server: ServerData,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    replication: ReplicationPolicy = DEFAULT_REPLICATION,
) -> tuple[int, int]:
    """Judge all pending results; returns (valid, invalid) counts.

    A result whose unit already has its answer (VALID or DONE: it was uploaded while another result
    was being judged) is superseded without being judged, and counted in neither. A volunteer's
    valid result may send its unit to a replica (`replication`); a replica's result is compared with
    the first, and a host outvoted by two that agree is untrusted like any cheat.
    """
    with reading(engine) as conn:
        pending = conn.execute(
            select(results.c.id, results.c.wu_id, results.c.reporter, work_units.c.state)
            .join(work_units, work_units.c.id == results.c.wu_id)
            .where(results.c.verdict == Verdict.PENDING)
            .order_by(results.c.id)
        ).all()
    counts = {Verdict.VALID: 0, Verdict.INVALID: 0, Verdict.SUPERSEDED: 0}
    for row in pending:
        if row.state in _ANSWERED:
            judged: Judgement | None = Judgement(
                Verdict.SUPERSEDED, f"superseded: {row.wu_id} already had a valid result", 0
            )
        else:
            judged = _judge_stored(engine, row.id, server, replay_all=not is_trusted(engine, row.reporter))
        if judged is None:  # no longer pending: another validator or the assimilator closed it
            continue
        outvoted: list[tuple[str, str]] = []
        with transaction(engine) as conn:
            values: dict[str, object] = {
                "verdict": judged.verdict,
                "reason": judged.reason,
                "replayed": judged.replayed,
                "kernel_class": judged.kernel_class,
                "training_sha256": judged.training_sha256,
            }
            if judged.verdict != Verdict.VALID:
                values["payload"] = None  # rejected or unneeded bytes are not kept; the reason is
            updated = conn.execute(
                results.update()
                .where(results.c.id == row.id, results.c.verdict == Verdict.PENDING)
                .values(**values)
            )
            if updated.rowcount:
                now = utcnow()
                if judged.verdict == Verdict.VALID:
                    _note_class(conn, row.reporter, judged.kernel_class)
                    maybe_replicate(
                        conn, row.wu_id, row.reporter, judged.kernel_class or "", replication, now
                    )
                    outvoted = settle_replicas(conn, row.wu_id)
                transition_unit(conn, row.wu_id, now, max_attempts)
                counts[judged.verdict] += 1
                if judged.verdict == Verdict.VALID:
                    note_valid_result(conn, row.reporter)
        if judged.verdict == Verdict.INVALID:  # a well-formed result that the data contradicts: never benign
            distrust_reporter(engine, row.reporter, judged.reason or "invalid result", max_attempts)
        for reporter, why in outvoted:
            distrust_reporter(engine, reporter, why, max_attempts)
    return counts[Verdict.VALID], counts[Verdict.INVALID]


def _note_class(conn: Connection, reporter: str | None, kernel_class: str | None) -> None:
    """A host's kernel class, as its latest valid result says: the replicas it may take."""
    host_id = host_id_of(reporter)
    if host_id is not None and kernel_class:
        conn.execute(hosts.update().where(hosts.c.id == host_id).values(kernel_class=kernel_class))


def _judge_stored(engine: Engine, result_id: int, server: ServerData, replay_all: bool) -> Judgement | None:
    """Judge one pending result, outside any transaction (the re-evaluation is the slow part)."""
    with reading(engine) as conn:
        row = conn.execute(
            select(results.c.payload, work_units.c.spec_json, work_units.c.state_blob)
            .join(work_units, work_units.c.id == results.c.wu_id)
            .where(results.c.id == result_id, results.c.verdict == Verdict.PENDING)
        ).first()
    if row is None:
        return None
    return judge(WorkUnitSpec.from_json(row.spec_json), row.payload, server, row.state_blob, replay_all)
