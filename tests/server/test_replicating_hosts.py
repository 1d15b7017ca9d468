"""Replication and retroactive re-issue with a real server and real worker processes on loopback.

The experiment's units are uncut (`replay_segments = 1`: no segment replay), and the cheat trains at
three times the learning rate, so its results pass re-evaluation: here only a replica host, or a host
found out later, tells. Each test ends with the dataset an honest run makes, bit for bit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from server_setup import SMALL_PRESET, RunningServer, env_with_src, free_port

import mlc.dataset
from mlc.executors import LocalExecutor
from mlc.store import verify_dataset
from mlc.work import preset_from_text

pytestmark = pytest.mark.slow

PRESET = SMALL_PRESET.replace('spec_version = "mlds-1"', 'spec_version = "mlds-1"\nreplay_segments = 1')
_SAME = ["net_id", "task", "index", "net_seed", "epochs", "converged", "weights_sha256"]
_CHEAT = Path(__file__).with_name("malicious_worker.py")


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory: pytest.TempPathFactory) -> mlc.dataset.Dataset:
    summary = LocalExecutor(tmp_path_factory.mktemp("local"), "cpu", threads=1).run(preset_from_text(PRESET))
    return mlc.dataset.open(summary.dataset_dir)


def _server(db_url: str, tmp_path: Path, **settings: str) -> RunningServer:
    env = {f"MLC_SERVER_{k.upper()}": v for k, v in {"retry_after_s": "0.5", **settings}.items()}
    port = free_port()
    running = RunningServer(
        f"http://127.0.0.1:{port}", tmp_path / "server", db_url, port, tmp_path / "server.log", env=env
    )
    running.start()
    return running


@pytest.fixture
def replicating_server(db_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    """Every unit of every host goes to a replica host of its class (no probation, floor 1)."""
    running = _server(db_url, tmp_path, replication_run="0", replication_floor="1")
    yield running
    running.stop()


@pytest.fixture
def plain_server(db_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    running = _server(db_url, tmp_path, replication_run="0", replication_floor="0")
    yield running
    running.stop()


@pytest.fixture
def start_cheat(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """`start_cheat(server, *args)`: the lr-mode malicious worker (log tmp/cheat.log); killed at the
    end if still running, so a failing test leaves no process behind."""
    procs: list[subprocess.Popen] = []

    def start(server: RunningServer, *args: str) -> subprocess.Popen:
        cmd = [sys.executable, str(_CHEAT), server.url, str(tmp_path / "cheat"), "lr", *args]
        with (tmp_path / "cheat.log").open("ab") as log:  # the child keeps its own copy
            procs.append(subprocess.Popen(cmd, env=env_with_src(), stdout=log, stderr=subprocess.STDOUT))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _hosts(server: RunningServer) -> list[dict]:
    with server.admin() as admin:
        return admin.get("/admin/hosts").json()


def _same_as_local(info: dict, local: mlc.dataset.Dataset) -> mlc.dataset.Dataset:
    assert info["finished"] == info["n_networks"] and info["failed"] == 0
    got = mlc.dataset.open(info["dataset_dir"])
    pd.testing.assert_frame_equal(local.networks[_SAME], got.networks[_SAME])
    np.testing.assert_array_equal(local.weights(), got.weights())
    assert verify_dataset(info["dataset_dir"]).ok
    return got


def test_replicas_outvote_a_host_that_passes_re_evaluation(
    replicating_server: RunningServer,
    start_worker,
    start_cheat,
    tmp_path: Path,
    local_dataset: mlc.dataset.Dataset,
) -> None:
    server = replicating_server
    server.submit(PRESET)
    with server.admin() as admin:
        admin.post("/admin/experiments/small/pause")
    for name in ("honest-a", "honest-b"):  # registered (and so known replica hosts), nothing to do yet
        assert start_worker(server, name, "--exit-when-idle").wait(timeout=120) == 0
    with server.admin() as admin:
        admin.post("/admin/experiments/small/resume")
    cheat = start_cheat(server, "stay")  # it leases first: every unit it trains needs a replica
    deadline = time.monotonic() + 120
    while not any(h["name"] == "cheat-lr" and h["units_leased"] for h in _hosts(server)):
        assert time.monotonic() < deadline and cheat.poll() is None, (tmp_path / "cheat.log").read_text()
        time.sleep(0.2)
    honest = [start_worker(server, name) for name in ("honest-a", "honest-b")]
    assert cheat.wait(timeout=300) != 0
    assert "gets no more work" in (tmp_path / "cheat.log").read_text()
    info = server.wait_finished("small", timeout=300)
    for proc in honest:
        proc.terminate()
    by_name = {h["name"]: h for h in _hosts(server)}
    assert by_name["cheat-lr"]["trust"] == "untrusted"
    assert {by_name[n]["trust"] for n in ("honest-a", "honest-b")} <= {"new", "trusted"}
    got = _same_as_local(info, local_dataset)
    cheat_id = f"host:{by_name['cheat-lr']['host_id']}"
    pair = {f"host:{by_name[n]['host_id']}" for n in ("honest-a", "honest-b")}
    units = [unit for trained in got.networks["trained_by"] for unit in json.loads(trained)]
    assert not any(cheat_id in unit.split("+") for unit in units)  # nothing it trained stayed
    replicated = [unit for unit in units if set(unit.split("+")) == pair]
    assert replicated, units  # units confirmed by both honest hosts, bit for bit
    assert got.networks["confirmed"].sum() >= 1


def test_a_host_distrusted_after_its_networks_were_released_has_them_withdrawn_and_retrained(
    plain_server: RunningServer, start_worker, start_cheat, local_dataset: mlc.dataset.Dataset
) -> None:
    server = plain_server
    server.submit(PRESET)
    assert start_cheat(server).wait(timeout=300) == 0  # it trains everything, and passes
    info = server.wait_finished("small", timeout=120)
    assert info["finished"] == info["n_networks"]
    (host,) = _hosts(server)
    env = {**env_with_src(), "MLC_ADMIN_TOKEN": server.admin_token}
    distrust = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlc",
            "admin",
            "distrust",
            str(host["host_id"]),
            "--server",
            server.url,
            "--reason",
            "its owner admitted changing the learning rate",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert distrust.returncode == 0, distrust.stderr
    assert "untrusted" in distrust.stdout and "16 units" in distrust.stdout, distrust.stdout
    honest = start_worker(server, "honest", "--exit-when-idle")
    assert honest.wait(timeout=300) == 0
    got = _same_as_local(server.wait_finished("small", timeout=120), local_dataset)
    withdrawn = got.manifest["withdrawn"]
    assert sorted(e["net_id"] for e in withdrawn) == sorted(local_dataset.networks["net_id"])
    assert all("admitted changing the learning rate" in e["reason"] for e in withdrawn)
    assert f"host:{host['host_id']}" not in "".join(got.networks["trained_by"])
