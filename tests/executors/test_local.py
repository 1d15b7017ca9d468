"""The local executor end to end: preset -> units -> training -> validation -> assimilation -> dataset,
an interrupted run (kill -9) resumed to the same dataset, and a workdir that is moved, shared by two
runs, or missing its dataset."""

import json
import os
import shutil
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
from mlc.coordinator import (
    connect,
    create_experiment,
    get_experiment,
    lease_work,
    list_experiments,
    sqlite_url,
)
from mlc.errors import ConfigError, StateError, StoreBusy
from mlc.executors import LocalExecutor, run_in_progress
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


# ---- a workdir is self-contained and used by one run at a time -------------------------------------


def _units_leased_by(owner: str, preset: Path, workdir: Path, lease_seconds: float = 24 * 3600.0) -> int:
    """Leave the state an interrupted run leaves: the experiment created and every unit leased."""
    workdir.mkdir(parents=True, exist_ok=True)
    engine = connect(sqlite_url(workdir / "mlc.db"))
    exp, _ = create_experiment(engine, load_preset(str(preset)), (workdir / "dataset").resolve())
    n = len(lease_work(engine, owner, 10_000, lease_seconds, experiment_id=exp.id))
    engine.dispose()
    return n


def _attempts(workdir: Path) -> list[int]:
    with sqlite3.connect(workdir / "mlc.db") as conn:
        return [a for (a,) in conn.execute("select attempts from work_units where id like '%-p000'")]


@pytest.mark.parametrize("lease_seconds", [24 * 3600.0, -1.0], ids=["live", "expired"])
def test_a_run_takes_over_the_leases_of_a_local_run_interrupted_under_another_host_or_path(
    tiny_preset, tmp_path, lease_seconds
):
    """Live leases would stall the run for a day; expired ones (resumed a day later) would each
    count an attempt, so that a few such interruptions failed every network."""
    workdir = tmp_path / "w"
    assert _units_leased_by("local:another-host:/where/it/was", tiny_preset, workdir, lease_seconds) == 4
    summary = run_local(tiny_preset, workdir)
    assert summary.finalized and summary.status.n_finished == 4
    assert _attempts(workdir) == [1, 1, 1, 1]  # the same attempt, continued
    assert mlc.dataset.verify(summary.dataset_dir).ok


def test_a_moved_workdir_keeps_using_its_own_dataset(tiny_preset, tmp_path):
    first = run_local(tiny_preset, tmp_path / "a")
    before = mlc.dataset.open(first.dataset_dir).networks
    (tmp_path / "a").rename(tmp_path / "b")
    again = run_local(tiny_preset, tmp_path / "b")
    assert again.finalized and again.dataset_dir == tmp_path / "b" / "dataset"
    assert not (tmp_path / "a").exists()  # nothing recreated where the workdir was
    pd.testing.assert_frame_equal(before, mlc.dataset.open(again.dataset_dir).networks)
    engine = connect(sqlite_url(tmp_path / "b" / "mlc.db"))
    assert get_experiment(engine, "tiny").dataset_dir == (tmp_path / "b" / "dataset").resolve()
    engine.dispose()


def test_a_deleted_dataset_is_refused_rather_than_recreated_without_its_networks(tiny_preset, tmp_path):
    first = run_local(tiny_preset, tmp_path / "w")
    shutil.rmtree(first.dataset_dir)
    with pytest.raises(StateError, match="lacks 4 networks .* deleted or replaced"):
        run_local(tiny_preset, tmp_path / "w")
    assert not first.dataset_dir.exists()
    # a finalized dataset that lost one network's staged file is refused the same way
    run_local(tiny_preset, tmp_path / "v")
    staged = sorted((tmp_path / "v" / "dataset" / "staging").iterdir())
    for path in staged[: len(staged) // 4]:
        path.unlink()
    with pytest.raises(StateError, match=r"lacks 1 network \(.*\) finished in the database but missing"):
        run_local(tiny_preset, tmp_path / "v")


def test_a_second_run_in_the_same_workdir_is_refused_while_the_first_runs(tiny_preset, tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    assert not run_in_progress(workdir)
    holder = (  # another process holds the lock, as a running `mlc run` does
        "import filelock, sys, time; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); "
        "print('held', flush=True); time.sleep(60)"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, str(workdir / "mlc.lock")], stdout=subprocess.PIPE, text=True
    ) as other:
        try:
            assert other.stdout.readline().strip() == "held"
            assert run_in_progress(workdir)
            with pytest.raises(StoreBusy, match="another mlc run is using"):
                run_local(tiny_preset, workdir)
        finally:
            other.kill()
    assert not (workdir / "mlc.db").exists() and not run_in_progress(workdir)
    assert run_local(tiny_preset, workdir).finalized  # and once it is done


def test_a_workdir_holds_one_experiment_and_a_refused_one_leaves_no_trace(tiny_preset, tmp_path):
    run_local(tiny_preset, tmp_path / "w")
    other = tmp_path / "other.toml"
    other.write_text(tiny_preset.read_text().replace('name = "tiny"', 'name = "other"'))
    with pytest.raises(StateError, match="holds experiment 'tiny'; run 'other' in another --workdir"):
        run_local(other, tmp_path / "w")
    engine = connect(sqlite_url(tmp_path / "w" / "mlc.db"))
    assert [e.name for e in list_experiments(engine)] == ["tiny"]
    engine.dispose()


def test_an_unusable_workdir_or_database_is_a_clear_error(tiny_preset, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    for workdir in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(StateError, match=f"cannot use {workdir} as the workdir"):
            run_local(tiny_preset, workdir)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "mlc.db").write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(StateError, match="cannot read the database .*mlc.db: file is not a database"):
        run_local(tiny_preset, tmp_path / "w")


def test_a_population_larger_than_free_memory_is_refused_before_training(tiny_preset, tmp_path, monkeypatch):
    summary = LocalExecutor(tmp_path / "a", torch.device("cpu"), population_size=10**9).run(
        load_preset(str(tiny_preset))
    )
    assert summary.finalized  # only the 4 networks left are ever trained at once: they fit
    monkeypatch.setattr("mlc.work._runtime.free_memory", lambda device: 2**10)  # 1 KiB: not one network
    executor = LocalExecutor(tmp_path / "b", torch.device("cpu"), population_size=4)
    with pytest.raises(ConfigError, match=r"a population of 4 networks needs about .* at most 0 fit"):
        executor.run(load_preset(str(tiny_preset)))
    assert run_local(tiny_preset, tmp_path / "b").finalized  # the same workdir, sized from memory


def test_a_workdir_that_already_holds_two_experiments_resumes_each(tiny_preset, tmp_path):
    """Before one experiment per workdir was enforced, a refused second preset stayed registered."""
    workdir = tmp_path / "w"
    workdir.mkdir()
    engine = connect(sqlite_url(workdir / "mlc.db"))
    for name in ("tiny", "other"):
        text = tiny_preset.read_text().replace('name = "tiny"', f'name = "{name}"')
        (tmp_path / f"{name}.toml").write_text(text)
        create_experiment(engine, load_preset(str(tmp_path / f"{name}.toml")), workdir / "dataset")
    engine.dispose()
    assert run_local(tmp_path / "tiny.toml", workdir).finalized


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"population_size": -5}, "population_size must be a whole number >= 1"),
        ({"population_size": 0}, "population_size must be a whole number >= 1"),
        ({"threads": 0}, "threads must be a whole number >= 1"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        pytest.param(
            {"device": "cuda"},
            "device 'cuda' was asked for .* sees no CUDA GPU here",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here"),
        ),
    ],
)
def test_settings_are_checked_before_the_workdir_is_touched(tmp_path, arguments, message):
    with pytest.raises(ConfigError, match=message):
        LocalExecutor(tmp_path / "w", **arguments)
    assert not (tmp_path / "w").exists()


def test_a_device_may_be_named_as_the_cli_names_it(tiny_preset, tmp_path):
    executor = LocalExecutor(str(tmp_path / "w"), "cpu")
    assert executor.device == torch.device("cpu")
    summary = executor.run(load_preset(str(tiny_preset), {"networks_per_task": 1, "train.max_epochs": 1}))
    assert summary.finalized and summary.device == "cpu"


class _StopAtEpoch:
    """A progress sink that interrupts the run (as Ctrl-C does) after `at` epochs of its first batch,
    and records the epochs it sees."""

    def __init__(self, at: int | None) -> None:
        self.at, self.epochs = at, []

    def started(self, status, population_size) -> None: ...

    def assimilated(self, status) -> None: ...

    def epoch(self, report) -> None:
        self.epochs.append(report.epochs_done)
        if report.epochs_done == self.at:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_inside_its_work_unit(tiny_preset, tmp_path):
    text = tiny_preset.read_text().replace("epochs_per_wu = 2", "epochs_per_wu = 6")
    tiny_preset.write_text(text.replace("networks_per_wu = 1", "networks_per_wu = 4"))
    config = load_preset(str(tiny_preset))
    reference = LocalExecutor(tmp_path / "ref", "cpu", population_size=4).run(config)
    stopper = _StopAtEpoch(at=3)
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor(
            tmp_path / "w", "cpu", population_size=4, progress=stopper, checkpoint_seconds=0
        ).run(config)
    again = _StopAtEpoch(at=None)
    resumed = LocalExecutor(tmp_path / "w", "cpu", population_size=4, progress=again).run(config)
    # the checkpoint after epoch 2 was kept; only the epoch the interruption fell in is trained again
    assert again.epochs[0] == 3
    got, ref = mlc.dataset.open(resumed.dataset_dir), mlc.dataset.open(reference.dataset_dir)
    np.testing.assert_array_equal(ref.weights(), got.weights())
    pd.testing.assert_frame_equal(ref.history, got.history)
    assert not any((tmp_path / "w" / "checkpoints").iterdir())  # dropped once the results were stored


def test_an_experiment_grown_from_2_to_3_networks_per_task_equals_a_fresh_one_with_3(tiny_preset, tmp_path):
    three = load_preset(str(tiny_preset), {"networks_per_task": 3})
    fresh = LocalExecutor(tmp_path / "fresh", "cpu").run(three)
    small = LocalExecutor(tmp_path / "w", "cpu").run(load_preset(str(tiny_preset)))
    first = mlc.dataset.open(small.dataset_dir).networks.set_index("net_id")
    grown = LocalExecutor(tmp_path / "w", "cpu").run(three)
    assert grown.finalized and grown.resumed and grown.status.n_finished == grown.status.n_networks == 6
    got, ref = mlc.dataset.open(grown.dataset_dir), mlc.dataset.open(fresh.dataset_dir)
    assert mlc.dataset.verify(grown.dataset_dir).ok
    config = [json.loads((s.dataset_dir / "config.json").read_text()) for s in (grown, fresh)]
    assert got.manifest["n_networks"] == 6 and config[0] == config[1]
    columns = ["net_id", "task", "net_seed", "epochs", "converged", "final_val_loss", "weights_sha256"]
    pd.testing.assert_frame_equal(got.networks[columns], ref.networks[columns])
    np.testing.assert_array_equal(got.weights(), ref.weights())
    pd.testing.assert_frame_equal(got.history, ref.history)
    readme = (grown.dataset_dir / "README.md").read_text()
    assert "aims at 3 networks per task" in readme
    assert "(`mlc dataset export --per-task N`): 2 (reached)" in readme  # the preset's milestones
    # the networks of the first run were kept, not trained again
    kept = got.networks.set_index("net_id").loc[first.index]
    assert (kept["work_units"] == first["work_units"]).all()
