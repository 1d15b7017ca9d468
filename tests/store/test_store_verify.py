"""verify_dataset: a good dataset passes; damage is reported by file, never raised."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlc.errors import DatasetError
from mlc.store import DatasetWriter, verify_dataset


def test_a_good_dataset_verifies(finished: Path) -> None:
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
