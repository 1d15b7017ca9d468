"""Fixtures for the coordinator tests: a tiny experiment, and a fresh database per test.

Every database test runs against a SQLite file and, when it answers, the PostgreSQL server at
127.0.0.1:5432 (database `test`, trust auth). Each PostgreSQL test gets its own schema (named in the
URL's `search_path`), dropped afterwards, so parallel or repeated runs never see each other's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from coordinator_setup import Setup, tiny_config
from sqlalchemy import Engine, create_engine, text

from mlc.coordinator import ServerData, connect, create_experiment, sqlite_url

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True, scope="module")
def _tiny_populations(one_torch_thread: None) -> None:
    """Every coordinator test trains tiny populations (a conftest cannot carry `pytestmark`)."""


def _postgres_unreachable() -> str | None:
    """Why the PostgreSQL cases cannot run here, or None if they can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]>=3.1')"
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the server means: skip, saying why
        return f"PostgreSQL at {POSTGRES_URL} is unreachable: {type(exc).__name__}: {exc}"
    finally:
        engine.dispose()
    return None


@pytest.fixture(scope="session")
def _postgres_reason() -> str | None:
    return _postgres_unreachable()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, _postgres_reason: str | None) -> Iterator[str]:
    """A URL to an empty database: a SQLite file in tmp_path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "mlc.db")
        return
    if _postgres_reason is not None:
        pytest.skip(_postgres_reason)
    schema = f"mlc_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = connect(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def make_setup(engine: Engine, tmp_path: Path) -> Callable[..., Setup]:
    """`make_setup(**overrides)`: the tiny experiment (with preset overrides) created in `engine`."""

    def make(**overrides: object) -> Setup:
        config = tiny_config(**overrides)
        exp, created = create_experiment(engine, config, tmp_path / f"dataset-{config.name}")
        assert created
        server = ServerData(engine)
        writer = server.dataset_writer(exp.name)
        return Setup(engine, exp, server, writer)

    return make


@pytest.fixture
def coord(make_setup: Callable[..., Setup]) -> Setup:
    return make_setup()
