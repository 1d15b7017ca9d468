"""Opening the coordinator database: SQLite by default, PostgreSQL by URL.

On SQLite the driver's own transaction handling is switched off and a "begin" event emits ours
(SQLAlchemy's documented pysqlite recipe): every `transaction` begins `BEGIN IMMEDIATE`, so a
read-then-write such as lease_work's SELECT-then-UPDATE holds the write lock from its first statement
and a concurrent writer queues on the busy timeout instead of interleaving. Any other connection
(`reading`, a plain `engine.connect()`) begins deferred: with WAL it reads a snapshot and never waits
for, nor blocks, a writer, so `mlc status` reads while a run is writing.

Foreign database exceptions are translated here: a locked SQLite file, a PostgreSQL serialisation
failure, deadlock or lock timeout is `StoreBusy` (retry), a schema from another version or a file that
is not a readable database a `StateError`.

The schema is Alembic's (`migrations/`): a new database is created by running every migration, one
that is behind is upgraded when it is opened, and one from a newer mlc is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.exc import DatabaseError, OperationalError

from mlc._storage import disk_full, unwritable
from mlc.coordinator._schema import meta
from mlc.errors import StateError, StoreBusy

__all__ = ["connect", "reading", "sqlite_url", "transaction", "utcnow"]

_BEGIN_OPTION = "mlc_sqlite_begin"  # execution option: how a SQLite transaction begins
_BUSY_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
_BUSY_SQLITE_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)
_DAMAGED_SQLITE_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_SQLITE_FULL = 13  # "database or disk is full"
_SQLITE_UNWRITABLE = {8, 14}  # SQLITE_READONLY, SQLITE_CANTOPEN (a folder it cannot write its journal in)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def _sqlite_connect(dbapi_connection: object, _record: object) -> None:
    # pysqlite would BEGIN only before the first INSERT/UPDATE (after our SELECTs): switch its
    # transaction handling off; `_sqlite_begin` emits the BEGIN instead
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA busy_timeout=30000")  # first, so that the next pragmas wait too
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (mlc status) never block the writer
    cursor.execute("PRAGMA synchronous=FULL")  # a committed transition survives power loss
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(_BEGIN_OPTION, 'DEFERRED')}")


def connect(url: str) -> Engine:
    """An engine with the schema created, or upgraded where it is behind (Alembic).

    An existing database at the current revision is only read here, so opening one that a run is
    writing never waits.
    """
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    try:
        _bring_up_to_date(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _bring_up_to_date(engine: Engine) -> None:
    try:
        found = _stored_version(engine)
    except DatabaseError as exc:
        if getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF not in _DAMAGED_SQLITE_CODES:
            raise  # a server that cannot be reached, a folder that cannot be opened: not the file's fault
        where = engine.url.render_as_string(hide_password=True)
        raise StateError(
            f"cannot read the database {where}: {exc.orig}; restore it from a copy, or start again "
            "elsewhere (for a local run, another --workdir)"
        ) from exc
    config = _alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    if found != head:
        _migrate(engine, config, found)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "mlc.coordinator:migrations")
    return config


def _stored_version(engine: Engine) -> str | None:
    """The database's Alembic revision: None for an empty database, "0001" for one made before
    migrations existed (its hand-kept schema version "2" is that revision's schema)."""
    with reading(engine) as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        if revision is not None or not inspect(conn).has_table(meta.name):
            return revision
        version = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    if version != "2":
        raise StateError(
            f"database schema version {version} is not one this mlc knows; use the mlc that made it"
        )
    return "0001"


def _migrate(engine: Engine, config: Config, found: str | None) -> None:
    """Upgrade the database from revision `found` to the head, in one transaction."""
    script = ScriptDirectory.from_config(config)
    if found is not None and found not in {r.revision for r in script.walk_revisions()}:
        raise StateError(
            f"the database is at schema revision {found}, which this mlc does not know: a newer mlc "
            "made it; use that version (or newer)"
        )
    with transaction(engine) as conn:
        config.attributes["connection"] = conn
        if found == "0001" and MigrationContext.configure(conn).get_current_revision() is None:
            command.stamp(config, "0001")  # made before migrations: it is revision 0001's schema
        command.upgrade(config, "head")


def _translated(exc: OperationalError, engine: Engine | None = None) -> Exception:
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    where = engine.url.database if engine is not None and engine.url.database else "the database"
    if code is not None and code & 0xFF == _SQLITE_FULL:
        return disk_full(where)
    if code is not None and code & 0xFF in _SQLITE_UNWRITABLE:
        return unwritable(f"{where} (or its folder)", f"SQLite says {orig}")
    busy = getattr(orig, "sqlstate", None) in _BUSY_SQLSTATES or (
        code is not None and code & 0xFF in _BUSY_SQLITE_CODES
    )
    text = str(orig).lower()
    if busy or "database is locked" in text or "could not serialize" in text:
        return StoreBusy(f"database busy: {orig}; retry later")
    return exc


@contextlib.contextmanager
def _busy_is_transient(engine: Engine | None = None) -> Iterator[None]:
    """Translate a busy/locked/serialisation failure into StoreBusy, a full disk into DiskFull and an
    unwritable database into StateError; other errors pass unchanged."""
    try:
        yield
    except OperationalError as exc:
        translated = _translated(exc, engine)
        if translated is exc:
            raise
        raise translated from exc


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction (BEGIN IMMEDIATE on SQLite); a busy/locked database becomes StoreBusy."""
    with _busy_is_transient(engine), engine.connect() as conn:
        conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            yield conn


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reading only (on SQLite a deferred transaction: a WAL snapshot)."""
    with _busy_is_transient(engine), engine.connect() as conn:
        yield conn
