"""The validator daemon's pass: judge every pending result against the server's own data.

The expensive re-evaluation runs outside any transaction; the verdict and the unit's transition are
then written together, and only if the result is still pending (another validator may have won).
"""

from __future__ import annotations

from sqlalchemy import Engine, select

from mlc.coordinator._db import transaction, utcnow
from mlc.coordinator._scheduler import transition_unit
from mlc.coordinator._schema import Verdict, results, work_units
from mlc.coordinator._serverdata import ServerData
from mlc.errors import ResultRejected
from mlc.work import WorkUnitResult, WorkUnitSpec, validate_result

__all__ = ["judge", "validate_pending"]


def judge(spec: WorkUnitSpec, payload: bytes, server: ServerData) -> tuple[Verdict, str | None]:
    try:
        result = WorkUnitResult.from_bytes(payload)
        validate_result(spec, result, server.population(spec.experiment), server.arrays(spec.experiment))
    except ResultRejected as exc:
        return Verdict.INVALID, str(exc)
    return Verdict.VALID, None


def validate_pending(engine: Engine, server: ServerData) -> tuple[int, int]:
    """Judge all pending results; returns (valid, invalid) counts."""
    with engine.connect() as conn:
        pending = conn.execute(
            select(results.c.id, results.c.wu_id, results.c.payload, work_units.c.spec_json)
            .join(work_units, work_units.c.id == results.c.wu_id)
            .where(results.c.verdict == Verdict.PENDING)
            .order_by(results.c.id)
        ).all()
    counts = {Verdict.VALID: 0, Verdict.INVALID: 0}
    for row in pending:
        verdict, reason = judge(WorkUnitSpec.from_json(row.spec_json), row.payload, server)
        with transaction(engine) as conn:
            values: dict[str, object] = {"verdict": verdict, "reason": reason}
            if verdict == Verdict.INVALID:
                values["payload"] = None  # rejected bytes are not kept; the reason is
            updated = conn.execute(
                results.update()
                .where(results.c.id == row.id, results.c.verdict == Verdict.PENDING)
                .values(**values)
            )
            if updated.rowcount:
                transition_unit(conn, row.wu_id, utcnow())
                counts[verdict] += 1
    return counts[Verdict.VALID], counts[Verdict.INVALID]
