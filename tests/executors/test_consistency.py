"""The database and the dataset disagreeing: `mlc run` says which and repairs what loses nothing
(a staged network the database forgot, a damaged staged file, a network with no unit to train it),
refuses what would (a deleted database), and `mlc status` reports it."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mlc.dataset
from mlc.coordinator import check_consistency, connect, get_experiment, sqlite_url
from mlc.errors import StateError
from mlc.executors import LocalExecutor
from mlc.work import load_preset

SRC = str(Path(__file__).parents[2] / "src")
NET = "SingleDirectModified-000001"


def run_local(preset: Path, workdir: Path):
    return LocalExecutor(workdir, torch.device("cpu")).run(load_preset(str(preset)))


def sql(workdir: Path, statement: str) -> None:
    with sqlite3.connect(workdir / "mlc.db") as db:
        db.execute(statement, {"net": NET})


def findings(workdir: Path) -> list[str]:
    engine = connect(sqlite_url(workdir / "mlc.db"))
    try:
        return check_consistency(engine, get_experiment(engine, "tiny"), workdir / "dataset").findings()
    finally:
        engine.dispose()


def test_a_network_set_back_to_training_is_restored_from_the_dataset(tiny_preset, tmp_path):
    """It looped forever: "3/4 ... re-run the same command to resume"."""
    first = run_local(tiny_preset, tmp_path / "w")
    sql(tmp_path / "w", "UPDATE networks SET state = 'training' WHERE net_id = :net")
    status = subprocess.run([sys.executable, "-m", "mlc", "status", "--workdir", str(tmp_path / "w")],
                            env=dict(os.environ, PYTHONPATH=SRC, COLUMNS="300"), capture_output=True,
                            text=True, timeout=120)
    assert status.returncode == 0
    assert f"1 network ({NET}) finished in the dataset but not in the database" in status.stderr
    again = run_local(tiny_preset, tmp_path / "w")
    assert any(NET in line and "restores them" in line for line in again.repaired)
    assert again.finalized and again.status.n_finished == 4 and again.status.n_training == 0
    assert findings(tmp_path / "w") == []
    assert mlc.dataset.verify(first.dataset_dir).ok


def test_a_network_whose_rows_were_deleted_is_restored(tiny_preset, tmp_path):
    """The run said 3/3 finished while the dataset held 4."""
    run_local(tiny_preset, tmp_path / "w")
    sql(tmp_path / "w", "DELETE FROM networks WHERE net_id = :net")
    assert "1 network" in findings(tmp_path / "w")[0]
    again = run_local(tiny_preset, tmp_path / "w")
    assert again.repaired and again.status.n_networks == again.status.n_finished == 4


def test_a_damaged_staged_network_is_set_aside_and_trained_again_to_the_same_weights(tiny_preset, tmp_path):
    first = run_local(tiny_preset, tmp_path / "w")
    before = mlc.dataset.open(first.dataset_dir).weights(net_ids=[NET])
    staged = first.dataset_dir / "staging" / f"{NET}.safetensors"
    data = bytearray(staged.read_bytes())
    data[-1] ^= 1  # a low bit of the last history value
    staged.write_bytes(bytes(data))
    assert "damaged in the dataset's staging/" in findings(tmp_path / "w")[0]
    again = run_local(tiny_preset, tmp_path / "w")
    assert any("sets the files aside and trains the finished ones again" in line for line in again.repaired)
    assert again.finalized and again.status.n_finished == 4
    assert (staged.parent / f"{NET}.safetensors.damaged-1").exists()
    assert mlc.dataset.verify(first.dataset_dir).ok
    np.testing.assert_array_equal(mlc.dataset.open(first.dataset_dir).weights(net_ids=[NET]), before)


def test_a_network_with_no_unit_and_no_staged_file_is_trained_again(tiny_preset, tmp_path):
    first = run_local(tiny_preset, tmp_path / "w")
    sql(tmp_path / "w", "UPDATE networks SET state = 'training' WHERE net_id = :net")
    (first.dataset_dir / "staging" / f"{NET}.safetensors").unlink()
    assert "with no work unit to train them" in findings(tmp_path / "w")[0]
    again = run_local(tiny_preset, tmp_path / "w")
    assert again.finalized and again.status.n_finished == 4
    assert mlc.dataset.verify(first.dataset_dir).ok


def test_a_deleted_database_is_refused_before_anything_is_trained_again(tiny_preset, tmp_path):
    """It retrained everything and then refused with "wall_time_s differ", naming nothing."""
    run_local(tiny_preset, tmp_path / "w")
    for path in (tmp_path / "w").glob("mlc.db*"):
        path.unlink()
    with pytest.raises(StateError, match=r"holds 4 networks but there is no database .*mlc.db: it was "
                                         "deleted or moved. Put it back to resume"):
        run_local(tiny_preset, tmp_path / "w")
    assert not (tmp_path / "w" / "mlc.db").exists()
