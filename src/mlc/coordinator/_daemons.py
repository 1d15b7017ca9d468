"""Daemon heartbeats: each pass of the transitioner, validator or assimilator leaves a row saying when
it ran, how long it took and whether it failed, so the server's status shows a daemon that has died or
is stuck (BOINC's admins watched the same in its task table)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select

from mlc.coordinator._db import reading, transaction, utcnow
from mlc.coordinator._schema import daemons

__all__ = ["DAEMONS", "heartbeats", "record_heartbeat"]

DAEMONS = ("transitioner", "validator", "assimilator")


def record_heartbeat(engine: Engine, name: str, owner: str, seconds: float, error: str | None) -> None:
    now = utcnow()
    with transaction(engine) as conn:
        found = conn.execute(
            select(daemons.c.passes).where(daemons.c.name == name).with_for_update()
        ).scalar()
        values = {"owner": owner, "last_pass_at": now, "last_pass_s": seconds, "last_error": error}
        if found is None:
            conn.execute(daemons.insert().values(name=name, passes=1, **values))
        else:
            conn.execute(daemons.update().where(daemons.c.name == name).values(passes=found + 1, **values))


def heartbeats(engine: Engine, now: datetime | None = None) -> list[dict[str, object]]:
    """Each daemon's last pass as plain data (name, owner, last_pass_at, age_s, last_pass_s, passes,
    last_error), for the status page and its JSON."""
    now = now or utcnow()
    with reading(engine) as conn:
        rows = conn.execute(select(daemons).order_by(daemons.c.name)).all()
    return [
        dict(
            name=r.name,
            owner=r.owner,
            last_pass_at=r.last_pass_at.isoformat() + "Z",
            age_s=round((now - r.last_pass_at).total_seconds(), 1),
            last_pass_s=round(r.last_pass_s, 3),
            passes=r.passes,
            last_error=r.last_error,
        )
        for r in rows
    ]
