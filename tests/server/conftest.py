"""A real `mlc server` process on 127.0.0.1 (a free port), on SQLite and, where it answers, on
PostgreSQL; stopped by the test. Workers run as real `mlc worker` processes (`start_worker`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server_setup import RunningServer, env_with_src, free_port


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    port = free_port()
    running = RunningServer(
        f"http://127.0.0.1:{port}", tmp_path / "server", db_url, port, tmp_path / "server.log"
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """`start_worker(server, name, *args)`: an `mlc worker` process with its own folder (tmp/NAME)
    and log (tmp/NAME.log), one training thread; every one still running is killed at the end."""
    procs: list[subprocess.Popen] = []

    def start(server: RunningServer, name: str, *args: str) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "-m",
            "mlc",
            "worker",
            "--server",
            server.url,
            "--workdir",
            str(tmp_path / name),
            "--threads",
            "1",
            "--name",
            name,
            *args,
        ]
        with (tmp_path / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(cmd, env=env_with_src(), stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
