"""Alembic migrations: a new database gets exactly the schema the code declares, a database made
before migrations existed is upgraded with its rows kept, and one from a newer mlc is refused."""

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from mlc.coordinator import connect, list_experiments
from mlc.coordinator._db import _alembic_config
from mlc.coordinator._schema import metadata
from mlc.errors import StateError


def test_the_migrations_build_the_declared_schema(db_url):
    engine = connect(db_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert conn.execute(text("SELECT value FROM mlc_meta")).scalar() == "3"
    engine.dispose()


def _database_from_before_migrations(url: str) -> None:
    """What mlc 0.1 left: its schema (revision 0001), no alembic_version table, and one experiment."""
    raw = create_engine(url)
    config = _alembic_config()
    with raw.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(
            text(
                "INSERT INTO experiments (name, config_json, data_digest, layout_id, dataset_dir, created_at,"
                " finished_at) VALUES ('old', '{}', 'd', 'l', '/x', '2026-01-01', '2026-01-02')"
            )
        )
    raw.dispose()


def test_a_database_from_before_migrations_is_upgraded_with_its_rows(db_url):
    _database_from_before_migrations(db_url)
    engine = connect(db_url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT name, state, queue FROM experiments")).one()
        assert tuple(row) == ("old", "finished", "cpu")
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        assert MigrationContext.configure(conn).get_current_revision() == head
    with pytest.raises(StateError, match="refuses"):  # its config '{}' is no valid config, and says so
        list_experiments(engine)
    engine.dispose()


def test_a_database_from_a_newer_mlc_is_refused(db_url):
    connect(db_url).dispose()
    raw = create_engine(db_url)
    with raw.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    raw.dispose()
    with pytest.raises(StateError, match="schema revision 0099, which this mlc does not know: a newer mlc"):
        connect(db_url)
