"""verify_dataset: a good dataset passes; damage is reported by file, never raised."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlc.errors import DatasetError
from mlc.store import DatasetWriter, open_dataset, verify_dataset
from mlc.store._files import read_json, write_json


def test_a_good_dataset_verifies(finished: Path) -> None:
    assert verify_dataset(open_dataset(finished)).ok  # an opened dataset, from its files
    report = verify_dataset(finished)
    assert report.ok and report.problems == []
    assert report.n_networks == 6
    assert report.n_files_checked == 8  # 6 fixed files and one shard per task


def test_a_corrupted_shard_is_reported(finished: Path) -> None:
    shard = finished / "weights" / "ParityModified.safetensors"
    data = bytearray(shard.read_bytes())
    data[-100:-96] = bytes(b ^ 0xFF for b in data[-100:-96])  # inside the last network's weights
    shard.write_bytes(bytes(data))
    report = verify_dataset(finished)
    assert not report.ok
    assert any(p.startswith("weights/ParityModified.safetensors: SHA-256") for p in report.problems)
    assert any("weights/ParityModified.safetensors: 1 rows do not match" in p
               and "ParityModified-000002" in p for p in report.problems)


def test_a_mangled_header_is_reported_not_raised(finished: Path) -> None:
    shard = finished / "weights" / "SingleDirectMachine.safetensors"
    shard.write_bytes(b"\xff" * 64)
    report = verify_dataset(finished)
    assert not report.ok
    assert any(p.startswith("weights/SingleDirectMachine.safetensors: unreadable")
               for p in report.problems)


def test_missing_and_unlisted_files_are_reported(finished: Path) -> None:
    (finished / "history.parquet").unlink()
    (finished / "weights" / "Extra.safetensors").write_bytes(b"not ours")
    report = verify_dataset(finished)
    assert "history.parquet: missing" in report.problems
    assert "weights/Extra.safetensors: not listed in the manifest" in report.problems
    assert report.n_files_checked == 7


def test_short_history_and_changed_data_are_reported(finished: Path) -> None:
    history = pq.read_table(finished / "history.parquet")
    pq.write_table(history.slice(0, history.num_rows - 1), finished / "history.parquet")
    data = bytearray((finished / "data.safetensors").read_bytes())
    data[-1] ^= 1  # the last byte of the last tensor
    (finished / "data.safetensors").write_bytes(bytes(data))
    problems = verify_dataset(finished).problems
    assert any(p.startswith("history.parquet: history rows do not run 1..epochs for 1 networks "
                            "(ParityModified-000002)") for p in problems)
    assert any(p.startswith("data.safetensors: val/targets/SingleDirectMachine does not match")
               for p in problems)


def test_verify_raises_only_for_non_datasets(tmp_path: Path,
                                             new_writer: Callable[..., DatasetWriter]) -> None:
    with pytest.raises(DatasetError, match="no dataset.json"):
        verify_dataset(tmp_path)
    report = verify_dataset(new_writer(tmp_path / "draft").path)
    assert not report.ok and "not finalized" in report.problems[0]


def test_a_manifest_that_disagrees_with_the_hashed_files_is_reported(finished: Path) -> None:
    """Its fields are checked against the data file and the table too (here, one written without its
    own hash, as older versions wrote them)."""
    manifest = read_json(finished / "dataset.json")
    del manifest["manifest_sha256"]
    manifest["data"]["seed"] += 6
    manifest["n_networks"] = 25
    write_json(finished / "dataset.json", manifest)
    problems = verify_dataset(finished).problems
    assert any(p.startswith("dataset.json: data is {") and "data.safetensors was written for {" in p
               for p in problems)
    assert "dataset.json: n_networks is 25, networks.parquet has 6 rows" in problems
    assert any(p.startswith("networks.parquet: 6 rows have a data_seed other than the manifest's")
               for p in problems)


def test_an_edited_manifest_is_refused_by_its_own_hash(finished: Path) -> None:
    manifest = read_json(finished / "dataset.json")
    manifest["created"] = "2020-01-01T00:00:00+00:00"  # a field no other file restates
    write_json(finished / "dataset.json", manifest)
    with pytest.raises(DatasetError, match="dataset.json does not match its own SHA-256"):
        verify_dataset(finished)


def test_rows_of_another_model_are_reported(finished: Path) -> None:
    table = pq.read_table(finished / "networks.parquet")
    models = table["model"].to_pylist()
    models[0] = "other-model"
    table = table.set_column(table.schema.get_field_index("model"), "model", pa.array(models))
    pq.write_table(table, finished / "networks.parquet")
    problems = verify_dataset(finished).problems
    assert any(p.startswith("networks.parquet: 1 rows have a model other than the manifest's")
               for p in problems)


@pytest.mark.parametrize("name", ["data.safetensors", "layout.json", "networks.parquet", "history.parquet",
                                  "weights/ParityModified.safetensors"])
def test_a_missing_file_is_reported_once(finished: Path, name: str) -> None:
    """Not again as "unreadable" by each check that reads it."""
    (finished / name).unlink()
    problems = verify_dataset(finished).problems
    assert f"{name}: missing" in problems
    assert [p for p in problems if name in p] == [f"{name}: missing"], problems


def test_a_table_written_before_the_added_columns_still_verifies(finished: Path) -> None:
    """Datasets made before sweeps and DS4 lack their columns; they stay valid format-1 datasets."""
    from mlc.store._files import file_sha256
    from mlc.store._format import ADDED_COLUMNS, read_manifest, write_manifest

    full = pq.read_table(finished / "networks.parquet")
    table = full.drop_columns(list(ADDED_COLUMNS))
    pq.write_table(table, finished / "networks.parquet")
    manifest = read_manifest(finished)
    manifest["files"]["networks.parquet"] = file_sha256(finished / "networks.parquet")
    write_manifest(finished, manifest)
    assert verify_dataset(finished).ok
    pq.write_table(table.drop_columns(["lr"]), finished / "networks.parquet")
    manifest["files"]["networks.parquet"] = file_sha256(finished / "networks.parquet")
    write_manifest(finished, manifest)
    assert any("are not the format's" in p for p in verify_dataset(finished).problems)
    pq.write_table(full.drop_columns(["trojan_accuracy"]), finished / "networks.parquet")  # half a pair
    manifest["files"]["networks.parquet"] = file_sha256(finished / "networks.parquet")
    write_manifest(finished, manifest)
    assert any("are not the format's" in p for p in verify_dataset(finished).problems)
