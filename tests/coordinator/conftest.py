"""Fixtures for the coordinator tests: a tiny experiment, and a fresh database per test (`db_url`,
from the top-level conftest: SQLite, and PostgreSQL where it answers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from coordinator_setup import Setup, tiny_config
from sqlalchemy import Engine

from mlc.coordinator import ServerData, connect, create_experiment


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
