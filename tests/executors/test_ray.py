"""The Ray executor on a local Ray instance (one per module): a tiny preset gives exactly the local
executor's networks, a Ray task whose worker process is SIGKILLed is retried with nothing lost or
stored twice, and without Ray installed `--executor ray` says how to install it."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import mlc.dataset
from mlc.errors import ConfigError
from mlc.executors import LocalExecutor, RayExecutor, RunSummary
from mlc.work import load_preset

SRC = str(Path(__file__).parents[2] / "src")
COLUMNS = ["net_id", "task", "index", "net_seed", "epochs", "converged", "final_val_loss", "weights_sha256"]


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[object]:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mlc[ray]')")
    with pytest.MonkeyPatch.context() as patch:  # the task processes import mlc from this tree
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def local_run(tiny_preset: Path, tmp_path: Path) -> RunSummary:
    return LocalExecutor(tmp_path / "local", torch.device("cpu")).run(load_preset(str(tiny_preset)))


def assert_same_networks(ref: RunSummary, got: RunSummary) -> None:
    assert got.finalized and got.status.n_finished == ref.status.n_finished == 4
    a, b = mlc.dataset.open(ref.dataset_dir), mlc.dataset.open(got.dataset_dir)
    pd.testing.assert_frame_equal(a.networks[COLUMNS], b.networks[COLUMNS])
    pd.testing.assert_frame_equal(a.history, b.history)
    np.testing.assert_array_equal(a.weights(), b.weights())
    assert mlc.dataset.verify(got.dataset_dir).ok


def test_a_tiny_preset_through_ray_gives_the_local_executors_networks(
    ray_instance, tiny_preset, local_run, tmp_path
):
    # one unit per task: twelve tasks, two at a time, each under its own slot's lease owner
    ray = RayExecutor(tmp_path / "ray", "cpu", population_size=1)
    summary = ray.run(load_preset(str(tiny_preset)))
    assert ray.n_slots == 2 and summary.population_size == 1 and not summary.resumed
    assert_same_networks(local_run, summary)
    again = RayExecutor(tmp_path / "ray", "cpu").run(load_preset(str(tiny_preset)))  # nothing left: no task
    assert again.resumed and again.finalized
    pd.testing.assert_frame_equal(
        mlc.dataset.open(summary.dataset_dir).networks, mlc.dataset.open(again.dataset_dir).networks
    )


def _training_workers() -> list[int]:
    """Pids of Ray worker processes running a training task now (Ray titles them by the task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(
                b"ray::_train_population"
            ):
                pids.append(int(entry.name))
        except OSError:  # the process ended meanwhile
            continue
    return pids


def test_a_task_whose_worker_is_killed_is_retried_and_nothing_is_lost_or_stored_twice(
    ray_instance, tiny_preset, local_run, tmp_path
):
    killed: list[int] = []
    stop = threading.Event()

    def kill_the_first_training_worker() -> None:
        while not stop.is_set() and not killed:
            for pid in _training_workers():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break

    killer = threading.Thread(target=kill_the_first_training_worker)
    killer.start()
    try:
        summary = RayExecutor(tmp_path / "ray", "cpu", population_size=1).run(load_preset(str(tiny_preset)))
    finally:
        stop.set()
        killer.join()
    assert killed, "no training task was caught running; make the tasks longer"
    assert_same_networks(local_run, summary)
    with sqlite3.connect(tmp_path / "ray" / "mlc.db") as conn:
        attempts = sorted(a for (a,) in conn.execute("select attempts from work_units"))
        n_results = conn.execute("select count(*) from results").fetchone()[0]
    assert attempts == [1] * 11 + [2]  # the lost task's unit was leased once more, the others once
    assert n_results == 12  # one result per unit: the lost one reported nothing
    assert len(list((summary.dataset_dir / "staging").iterdir())) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "cuda:1"}, "Ray assigns GPUs"),
        ({"threads": 0}, "threads must be a whole number >= 1"),
        ({"lease_seconds": 0.0}, "lease_seconds must be > 0"),
    ],
)
def test_the_ray_executor_refuses_bad_arguments_before_anything_runs(tmp_path, kwargs, message):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'mlc[ray]')")
    with pytest.raises(ConfigError, match=message):
        RayExecutor(tmp_path / "w", **kwargs)
    assert not (tmp_path / "w").exists()


def test_without_ray_the_cli_says_how_to_install_it(tiny_preset, tmp_path):
    hide_ray = "import sys; sys.modules['ray'] = None; from mlc.cli import main; main()"
    args = ["run", str(tiny_preset), "--executor", "ray", "--workdir", str(tmp_path / "w")]
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.run(
        [sys.executable, "-c", hide_ray, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "pip install 'mlc[ray]'" in " ".join(proc.stderr.split())
    assert not (tmp_path / "w").exists()
