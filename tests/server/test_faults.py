"""Faults on loopback: a worker killed mid unit resumes from its checkpoint; the server killed mid
run and restarted loses and doubles nothing; a worker whose server is away finishes and uploads
once it is back."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
from server_setup import SMALL_PRESET

import mlc.dataset

pytestmark = pytest.mark.slow

# longer units than SMALL_PRESET's, so a kill lands inside one
LONG_UNITS = (
    SMALL_PRESET.replace("epochs_per_wu = 2", "epochs_per_wu = 8")
    .replace("max_epochs = 4", "max_epochs = 8")
    .replace("n_train = 64", "n_train = 640")
    .replace("networks_per_wu = 1", "networks_per_wu = 8")
)


def _wait_for(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path} within {timeout} s: {path.read_text()[-2000:]}")


def _complete_and_single(server, name: str = "small") -> None:
    info = server.wait_finished(name, timeout=120)
    assert info["finished"] == info["n_networks"] and info["failed"] == 0
    report = mlc.dataset.verify(info["dataset_dir"])
    assert report.ok, report.problems
    nets = mlc.dataset.open(info["dataset_dir"]).networks
    assert nets["net_id"].is_unique and len(nets) == info["n_networks"]


def test_a_killed_worker_resumes_its_unit_from_the_checkpoint(server, start_worker, tmp_path):
    server.submit(LONG_UNITS)
    first = start_worker(server, "w", "--checkpoint-seconds", "0")
    deadline = time.monotonic() + 120
    while not any((tmp_path / "w" / "checkpoints").glob("*.safetensors")):
        assert time.monotonic() < deadline and first.poll() is None, (tmp_path / "w.log").read_text()
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    again = start_worker(server, "w", "--exit-when-idle")
    assert again.wait(timeout=300) == 0, (tmp_path / "w.log").read_text()[-3000:]
    log = (tmp_path / "w.log").read_text()
    assert "resuming 4 leased unit(s) from before the restart" in log  # its whole batch
    assert "resumed from a checkpoint after" in log
    _complete_and_single(server)


def test_the_server_killed_mid_run_loses_and_doubles_nothing(server, start_worker, tmp_path):
    server.submit()
    workers = [start_worker(server, f"w{i}", "--exit-when-idle") for i in range(2)]
    deadline = time.monotonic() + 120
    while True:  # kill the server once some, but not all, results are in
        done = httpx.get(f"{server.url}/api/v1/status", timeout=10).json()["units"].get("done", 0)
        if done >= 2:
            break
        assert time.monotonic() < deadline, server.log.read_text()[-2000:]
        time.sleep(0.05)
    server.kill()
    time.sleep(2)
    server.start()
    for proc in workers:
        assert proc.wait(timeout=300) == 0
    _complete_and_single(server)


def test_a_worker_finishes_and_uploads_after_its_server_was_away(server, start_worker, tmp_path):
    server.submit(LONG_UNITS.replace("n_train = 640", "n_train = 2400"))  # a few seconds of training
    worker = start_worker(server, "w", "--exit-when-idle")
    _wait_for(tmp_path / "w.log", "training 4 unit(s)", 120)
    server.stop()
    time.sleep(20)  # the worker finishes its unit meanwhile and keeps its result on disk
    assert worker.poll() is None
    assert any((tmp_path / "w" / "outbox").glob("*.safetensors")), (tmp_path / "w.log").read_text()
    server.start()
    assert worker.wait(timeout=300) == 0, (tmp_path / "w.log").read_text()[-3000:]
    assert "server unreachable" in (tmp_path / "w.log").read_text()
    _complete_and_single(server)
