"""The local executor end to end: preset -> units -> training -> validation -> assimilation -> dataset,
and an interrupted run (kill -9) resumed to the same dataset."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import mlc.dataset
from mlc.executors import LocalExecutor
from mlc.work import load_preset


def run_local(preset: Path, workdir: Path):
    return LocalExecutor(workdir, torch.device("cpu")).run(load_preset(str(preset)))


def test_tiny_preset_runs_through_the_whole_pipeline(tiny_preset, tmp_path):
    summary = run_local(tiny_preset, tmp_path / "run")
    assert summary.finalized and not summary.resumed
    assert summary.status.n_finished == summary.status.n_networks == 4
    ds = mlc.dataset.open(summary.dataset_dir)
    nets = ds.networks
    assert sorted(nets["task"].unique()) == ["SingleDirectMachine", "SingleDirectModified"]
    assert (nets["epochs"] <= 6).all()
    assert not nets["converged"].any() or (nets.loc[nets["converged"], "final_val_loss"] < 0.01).all()
    # every network went through max_epochs / epochs_per_wu units unless it converged earlier
    assert all(len(eval(w)) == -(-e // 2) for w, e in zip(nets["work_units"], nets["epochs"], strict=True))
    assert len(ds.history) == nets["epochs"].sum()
    assert ds.weights("SingleDirectMachine").shape == (2, 4364)
    assert mlc.dataset.verify(summary.dataset_dir).ok
    # the stored weights are the networks' real weights: reload one and re-evaluate its final loss
    row = nets.iloc[0]
    module = ds.load_model(row["net_id"])
    data = ds.data()
    x = torch.from_numpy(data.val_inputs.astype(np.float32))
    y = torch.from_numpy(data.val_targets[row["task"]].astype(np.float32))
    with torch.no_grad():
        loss = torch.nn.functional.binary_cross_entropy_with_logits(module(x), y)
    assert abs(float(loss) - row["final_val_loss"]) < 1e-5


def test_rerunning_a_finished_run_changes_nothing(tiny_preset, tmp_path):
    first = run_local(tiny_preset, tmp_path / "run")
    before = mlc.dataset.open(first.dataset_dir).networks
    again = run_local(tiny_preset, tmp_path / "run")
    assert again.resumed and again.finalized
    pd.testing.assert_frame_equal(before, mlc.dataset.open(again.dataset_dir).networks)


def _done_units(db: Path) -> tuple[int, int]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            done = conn.execute("select count(*) from work_units where state = 'done'").fetchone()[0]
            left = conn.execute("select count(*) from networks where state = 'training'").fetchone()[0]
        return done, left
    except sqlite3.Error:
        return 0, -1


@pytest.mark.slow
def test_run_killed_mid_way_resumes_to_the_same_dataset(tiny_preset, tmp_path):
    reference = run_local(tiny_preset, tmp_path / "reference")
    workdir = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlc",
            "run",
            str(tiny_preset),
            "--workdir",
            str(workdir),
            "--device",
            "cpu",
            "--no-analyze",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        done, left = _done_units(workdir / "mlc.db")
        if done >= 1 and left > 0:
            proc.send_signal(signal.SIGKILL)
            killed_at = (done, left)
            break
        time.sleep(0.02)
    _, stderr = proc.communicate(timeout=30)
    assert killed_at is not None, f"not interrupted mid-way; make the run longer. stderr: {stderr[-2000:]!r}"
    resumed = run_local(tiny_preset, workdir)
    assert resumed.resumed and resumed.finalized
    ref = mlc.dataset.open(reference.dataset_dir)
    got = mlc.dataset.open(resumed.dataset_dir)
    cols = ["net_id", "task", "index", "net_seed", "epochs", "converged", "final_val_loss", "weights_sha256"]
    pd.testing.assert_frame_equal(ref.networks[cols], got.networks[cols])
    pd.testing.assert_frame_equal(ref.history, got.history)
    np.testing.assert_array_equal(ref.weights(), got.weights())
    assert mlc.dataset.verify(resumed.dataset_dir).ok
