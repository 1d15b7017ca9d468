"""Shared fixtures: a tiny preset file that trains in seconds through the whole pipeline, one
PyTorch thread for modules that train tiny populations, and Triton's CPU interpreter for the tests of
Triton kernels; and `db_url`, an empty database on SQLite and on PostgreSQL.

Triton's interpreter reads TRITON_INTERPRET when the kernels are defined (at import), so the
interpreted checks run in a child interpreter (the test file run as a script) that prints its
measurements as JSON; the tests assert on them. The parent process never launches a kernel and so
never depends on that variable."""

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from sqlalchemy import create_engine, text

from mlc.coordinator import sqlite_url

TINY_PRESET = """
# Tests: two machines and their data cut down so a full run takes seconds.
name = "tiny"
model = "mlds-gru"
spec_version = "mlds-1"
seed = 7
tasks = ["SingleDirectMachine", "SingleDirectModified"]
networks_per_task = 2
networks_per_wu = 1
epochs_per_wu = 2
subsets = [2]

[data]
seed = 3
n_train = 96
n_val = 24
length = 16

[train]
max_epochs = 6
"""


@pytest.fixture
def tiny_preset(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_PRESET)
    return path


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny populations: more threads only add contention (ten times slower on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def run_interpreted() -> Callable[[str], dict]:
    def run(script: str) -> dict:
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        src = str(Path(importlib.util.find_spec("mlc").origin).parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        proc = subprocess.run(
            [sys.executable, "-W", "error", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run


# ---- databases: every database test runs on a SQLite file and, when it answers, on the PostgreSQL
# server at 127.0.0.1:5432 (database `test`, trust auth). Each PostgreSQL test gets its own schema
# (named in the URL's `search_path`), dropped afterwards, so parallel or repeated runs never meet.

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
