"""Opening the coordinator database: SQLite by default, PostgreSQL by URL.

Foreign database exceptions are translated here: a locked SQLite file or a serialisation failure
is `StoreBusy` (retry), a schema from another version a `StateError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.exc import OperationalError

from mlc.coordinator._schema import SCHEMA_VERSION, meta, metadata
from mlc.errors import StateError, StoreBusy

__all__ = ["connect", "sqlite_url", "transaction", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (mlc status) never block the writer
    cursor.execute("PRAGMA synchronous=FULL")  # a committed transition survives power loss
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def connect(url: str) -> Engine:
    """An engine with the schema created (or checked, if it exists)."""
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    with transaction(engine) as conn:
        metadata.create_all(conn)
        found = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        if found is None:
            conn.execute(meta.insert().values(key="schema_version", value=SCHEMA_VERSION))
        elif found != SCHEMA_VERSION:
            raise StateError(
                f"database schema version {found}, this mlc needs {SCHEMA_VERSION}; "
                "use the mlc version that created it"
            )
    return engine


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction; a busy/locked database becomes StoreBusy."""
    try:
        with engine.begin() as conn:
            yield conn
    except OperationalError as exc:
        text = str(exc.orig).lower()
        if "locked" in text or "busy" in text or "could not serialize" in text:
            raise StoreBusy(f"database busy: {exc.orig}") from exc
        raise
