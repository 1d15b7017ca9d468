"""DatasetWriter: staging, idempotence, conflicts, rejected records, resume and determinism."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlc.errors import DatasetError
from mlc.store import DatasetWriter, open_dataset

Writer = Callable[..., DatasetWriter]


def test_create_writes_data_config_layout_and_draft_manifest(new_writer: Writer,
                                                             tmp_path: Path) -> None:
    (tmp_path / ".ds.creating-interrupted").mkdir()  # debris of a create that crashed
    writer = new_writer()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    names = sorted(p.name for p in writer.path.iterdir())
    assert names == ["config.json", "data.safetensors", "dataset.json", "layout.json", "staging",
                     "weights"]
    with pytest.raises(DatasetError, match="unfinished"):
        open_dataset(writer.path)


def test_add_is_idempotent(new_writer: Writer, make_net: Callable[..., Any]) -> None:
    writer = new_writer()
    net = make_net("SingleDirectMachine", 0)
    assert writer.add(net) is True
    staged = writer.path / "staging" / f"{net.net_id}.safetensors"
    before = staged.read_bytes()
    assert writer.add(net) is False
    assert writer.add(dataclasses.replace(net, weights=net.weights.copy())) is False
    assert staged.read_bytes() == before
    assert writer.staged_ids() == {net.net_id} and writer.n_staged == 1


def test_conflicting_add_is_rejected(new_writer: Writer, make_net: Callable[..., Any]) -> None:
    writer = new_writer()
    net = make_net("SingleDirectMachine", 0)
    writer.add(net)
    other = dataclasses.replace(net, weights=net.weights + 1, converged=not net.converged)
    with pytest.raises(DatasetError, match=r"\(converged, weights differ\).*never replaced"):
        writer.add(other)
    twin = dataclasses.replace(net, net_id="another-id")  # same task and index under a new id
    with pytest.raises(DatasetError, match="already stored as 'SingleDirectMachine-000000'"):
        writer.add(twin)
    assert writer.staged_ids() == {net.net_id}


BAD_RECORDS: list[tuple[dict[str, Any], str]] = [
    ({"weights": np.zeros(4000, np.float32)}, r"weights must be float32 \[4364\]"),
    ({"weights": np.zeros(4364, np.float64)}, r"weights must be float32 \[4364\]"),
    ({"weights": np.full(4364, np.nan, np.float32)}, "non-finite"),
    ({"val_loss": np.zeros(9, np.float32)}, "differ in length"),
    ({"train_loss": np.zeros(0, np.float32), "val_loss": np.zeros(0, np.float32),
      "val_accuracy": np.zeros(0, np.float32)}, "history is empty"),
    ({"task": "EightBitMachine"}, "not one of this dataset's tasks"),
    ({"dataset": "elsewhere"}, "dataset is 'elsewhere'"),
    ({"layout_id": "mlds-gru/000000000000"}, "layout_id"),
    ({"data_seed": 2}, "data_seed"),
    ({"net_id": "../escape"}, "not usable as a file name"),
    ({"index": -1}, "index must be at least 0"),
    ({"hyperparameters": {"lr": "fast"}}, "hyperparameters.lr"),
    ({"hyperparameters": {"opt": object()}}, "not JSON-serialisable"),
    ({"wall_time_s": float("inf")}, "wall_time_s"),
    ({"work_units": "wu-1"}, "work_units"),
]


@pytest.mark.parametrize(("change", "reason"), BAD_RECORDS)
def test_bad_records_are_rejected_with_a_reason(new_writer: Writer, make_net: Callable[..., Any],
                                                change: dict[str, Any], reason: str) -> None:
    writer = new_writer()
    with pytest.raises(DatasetError, match=reason):
        writer.add(make_net("SingleDirectMachine", 0, **change))
    assert writer.n_staged == 0
    assert list((writer.path / "staging").iterdir()) == []


def test_resume_after_interruption(new_writer: Writer, make_net: Callable[..., Any]) -> None:
    writer = new_writer()
    for index in range(2):
        writer.add(make_net("SingleDirectMachine", index))
    root = writer.path
    (root / "staging" / ".tmp-crashed").write_bytes(b"half a network")  # a write cut short
    del writer

    resumed = DatasetWriter.open(root)
    assert resumed.staged_ids() == {"SingleDirectMachine-000000", "SingleDirectMachine-000001"}
    assert not (root / "staging" / ".tmp-crashed").exists()
    assert resumed.add(make_net("SingleDirectMachine", 1)) is False
    assert resumed.add(make_net("ParityModified", 0)) is True
    # create() with the same arguments reopens the same dataset instead of failing
    assert new_writer().staged_ids() == resumed.staged_ids()
    ds = open_dataset(resumed.finalize())
    assert sorted(ds.networks["net_id"]) == sorted(resumed.staged_ids())


def test_create_refuses_a_different_dataset(new_writer: Writer, tmp_path: Path) -> None:
    new_writer()
    with pytest.raises(DatasetError, match="different dataset.*config differ"):
        new_writer(config={"other": True})
    with pytest.raises(DatasetError, match="name, config differ"):
        new_writer(name="another", config={"other": True})
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="not an empty directory"):
        new_writer(tmp_path / "junk")
    with pytest.raises(DatasetError, match="no dataset.json"):
        DatasetWriter.open(tmp_path / "junk")


def test_finalize_is_deterministic_and_repeatable(new_writer: Writer, make_net: Callable[..., Any],
                                                  tmp_path: Path) -> None:
    nets = [make_net(task, index) for task in ("SingleDirectMachine", "ParityModified")
            for index in range(3)]
    forward, backward = new_writer(tmp_path / "a"), new_writer(tmp_path / "b")
    for net in nets:
        forward.add(net)
    for net in reversed(nets):
        backward.add(net)
    files_a = open_dataset(forward.finalize()).manifest["files"]
    files_b = open_dataset(backward.finalize()).manifest["files"]
    assert files_a == files_b
    networks = open_dataset(tmp_path / "a").networks
    assert list(networks["task"]) == ["SingleDirectMachine"] * 3 + ["ParityModified"] * 3
    assert list(networks["index"]) == [0, 1, 2] * 2

    assert open_dataset(forward.finalize()).manifest["files"] == files_a  # again: same bytes
    forward.add(make_net("ParityModified", 3))
    again = open_dataset(forward.finalize())
    assert again.manifest["counts"]["ParityModified"]["networks"] == 4
    assert len(list((tmp_path / "a" / "staging").iterdir())) == 7  # staging is kept


def test_withdraw_takes_a_record_out_says_so_and_frees_its_slot(new_writer: Writer,
                                                                 make_net: Callable[..., Any]) -> None:
    from mlc.store import verify_dataset
    from mlc.store._format import read_manifest

    writer = new_writer()
    kept, bad = make_net("SingleDirectMachine", 0), make_net("SingleDirectMachine", 1)
    writer.add(kept), writer.add(bad)
    writer.finalize()
    assert writer.withdraw(bad.net_id, ["wu-other"], "stale request") is False  # another record's units
    assert writer.finalized
    assert writer.withdraw(bad.net_id, list(bad.work_units), "its host became untrusted") is True
    assert not writer.finalized and writer.staged_ids() == {kept.net_id}
    assert writer.withdraw(bad.net_id, list(bad.work_units), "again") is False  # already out
    (entry,) = read_manifest(writer.path)["withdrawn"]
    assert entry["net_id"] == bad.net_id and entry["reason"] == "its host became untrusted"
    assert (writer.path / entry["file"]).is_file()
    retrain = make_net("SingleDirectMachine", 1, work_units=("wu-r1",), weights=bad.weights + 1)
    assert writer.add(retrain) is True  # the slot is free for the retrain
    writer.finalize()
    ds = open_dataset(writer.path)
    assert ds.networks["net_id"].tolist() == [kept.net_id, bad.net_id]
    np.testing.assert_array_equal(ds.weights("SingleDirectMachine")[1], retrain.weights)
    assert verify_dataset(writer.path).ok and ds.manifest["withdrawn"] == [entry]
    reopened = DatasetWriter.open(writer.path)
    assert reopened.withdraw(bad.net_id, list(bad.work_units), "stale") is False  # never the retrain


def test_a_withdrawal_cut_short_after_its_record_finishes_without_saying_it_twice(
        new_writer: Writer, make_net: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from mlc.store._format import read_manifest

    writer = new_writer()
    net = make_net("SingleDirectMachine", 0)
    writer.add(net)

    def crash(*_: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        writer.withdraw(net.net_id, list(net.work_units), "untrusted")
    monkeypatch.undo()
    again = DatasetWriter.open(writer.path)
    assert again.withdraw(net.net_id, list(net.work_units), "untrusted") is True
    assert len(read_manifest(writer.path)["withdrawn"]) == 1 and again.n_staged == 0
