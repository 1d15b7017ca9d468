"""Credit: what a host and its volunteer are granted for each valid result, BOINC style.

A result's credit comes from its work unit's FLOP count, worked out by the server from the unit's
spec (`GRUNetConfig.train_flop`, the count the benchmarks report): every member's epochs of training
on the unit's data and its validation pass each epoch. Nothing the host says (its speed, its device,
its claimed run time) enters it. One credit is BOINC's cobblestone: 1/200 of a day of a 1 GFLOPS
machine, 4.32e11 FLOP.

Credit is settled by a pass after each validator pass (`settle_credit`): a result judged valid and
not yet credited is granted its credit, and one credited but no longer valid (its host was found
cheating and its results voided) has it revoked. Each is one transaction guarded by the result's own
columns, so a pass that dies half way is simply run again, and nothing is granted twice.

The recent average credit (BOINC's RAC) is credit per day, exponentially weighted with a one-week
half-life: each grant of c adds c * ln2 / half_life (in days), and the sum decays between grants, so
a host earning C a day steadily converges to RAC = C, and one that stops halves every week.
"""

from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import Connection, Engine, Table, select

from mlc.coordinator._db import reading, transaction, utcnow
from mlc.coordinator._schema import Verdict, accounts, hosts, results, work_units
from mlc.work import WorkUnitSpec

__all__ = [
    "COBBLESTONE_FLOP",
    "RAC_HALF_LIFE_DAYS",
    "decayed_rac",
    "settle_credit",
    "unit_credit",
    "unit_flop",
]

COBBLESTONE_FLOP = 86_400e9 / 200  # BOINC's credit: 1/200 day of a 1 GFLOPS machine
RAC_HALF_LIFE_DAYS = 7.0
_HOST_PREFIX = "host:"


def unit_flop(spec: WorkUnitSpec) -> int:
    """The FLOPs of the training `spec` asks for: each member's epochs of the unit's budget (capped by
    the experiment's max_epochs), each a pass of training over n_train sequences and of evaluation
    over n_val. A member whose stop rule ends it early is counted for the budget it was given."""
    from mlc.models import config

    model = config(spec.model, spec.model_settings)
    per_epoch = model.train_flop(spec.data.n_train, spec.data.length) + model.forward_flop(
        spec.data.n_val, spec.data.length
    )
    epochs = sum(
        max(0, min(spec.epochs, spec.train.max_epochs - m.start_epoch)) for m in spec.members
    )
    return epochs * per_epoch


def unit_credit(spec: WorkUnitSpec) -> float:
    return unit_flop(spec) / COBBLESTONE_FLOP


def decayed_rac(rac: float, at: datetime | None, now: datetime) -> float:
    """`rac` as it stood at `at`, decayed to `now`."""
    if at is None or now <= at:
        return rac
    days = (now - at).total_seconds() / 86_400
    return rac * math.exp(-math.log(2) * days / RAC_HALF_LIFE_DAYS)


def _rac_share(credit: float) -> float:
    return credit * math.log(2) / RAC_HALF_LIFE_DAYS


def settle_credit(engine: Engine) -> tuple[int, int]:
    """Grant the credit of every valid result of a volunteer host not credited yet, and revoke it from
    every credited result no longer valid; returns (granted, revoked) counts."""
    with reading(engine) as conn:
        to_grant = conn.execute(
            select(results.c.id, results.c.reporter, work_units.c.spec_json)
            .join(work_units, work_units.c.id == results.c.wu_id)
            .where(
                results.c.verdict == Verdict.VALID,
                results.c.credited_at.is_(None),
                results.c.reporter.startswith(_HOST_PREFIX),
            )
            .order_by(results.c.id)
        ).all()
        to_revoke = conn.execute(  # voiding makes a result invalid; nothing else takes back a verdict
            select(results.c.id, results.c.reporter).where(
                results.c.verdict == Verdict.INVALID, results.c.credited_at.isnot(None), results.c.credit > 0
            )
        ).all()
    granted = sum(_grant(engine, r.id, _host_id(r.reporter), r.spec_json) for r in to_grant)
    revoked = sum(_revoke(engine, r.id, _host_id(r.reporter)) for r in to_revoke)
    return granted, revoked


def _host_id(reporter: str) -> int:
    return int(reporter[len(_HOST_PREFIX) :])


def _grant(engine: Engine, result_id: int, host_id: int, spec_json: str) -> bool:
    credit = unit_credit(WorkUnitSpec.from_json(spec_json))
    now = utcnow()
    with transaction(engine) as conn:
        updated = conn.execute(
            results.update()
            .where(results.c.id == result_id, results.c.credited_at.is_(None))
            .values(credit=credit, credited_at=now)
        )
        if not updated.rowcount:  # another pass granted it
            return False
        _add(conn, hosts, host_id, credit, _rac_share(credit), now)
        account_id = conn.execute(select(hosts.c.account_id).where(hosts.c.id == host_id)).scalar()
        if account_id is not None:
            _add(conn, accounts, account_id, credit, _rac_share(credit), now)
    return True


def _revoke(engine: Engine, result_id: int, host_id: int) -> bool:
    """Take back a voided result's credit: its total, and what is left of its share of the average,
    from the host and the account it is linked to now (a host that moved in between takes it from
    its new volunteer: rare, and never more than that volunteer holds)."""
    now = utcnow()
    with transaction(engine) as conn:
        row = conn.execute(
            select(results.c.credit, results.c.credited_at).where(
                results.c.id == result_id, results.c.credit > 0, results.c.verdict != Verdict.VALID
            )
        ).first()
        if row is None:
            return False
        conn.execute(results.update().where(results.c.id == result_id).values(credit=0.0))
        share = decayed_rac(_rac_share(row.credit), row.credited_at, now)
        _add(conn, hosts, host_id, -row.credit, -share, now)
        account_id = conn.execute(select(hosts.c.account_id).where(hosts.c.id == host_id)).scalar()
        if account_id is not None:
            _add(conn, accounts, account_id, -row.credit, -share, now)
    return True


def _add(conn: Connection, table: Table, row_id: int, credit: float, rac: float, now: datetime) -> None:
    """Add to a host's or an account's total and average (decayed to `now` first; never below 0)."""
    row = conn.execute(
        select(table.c.credit, table.c.rac, table.c.rac_at).where(table.c.id == row_id).with_for_update()
    ).first()
    if row is None:
        return
    conn.execute(
        table.update()
        .where(table.c.id == row_id)
        .values(
            credit=max(0.0, row.credit + credit),
            rac=max(0.0, decayed_rac(row.rac, row.rac_at, now) + rac),
            rac_at=now,
        )
    )
