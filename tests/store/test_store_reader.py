"""Reading a finished dataset back: tables, weights, models, data, and refusals of non-datasets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlc.dataset
from mlc.errors import DatasetError
from mlc.models import flatten
from mlc.store import DatasetWriter, open_dataset
from mlc.tasks import SharedData


def test_round_trip(finished: Path, make_net: Callable[..., Any], shared_data: SharedData) -> None:
    ds = mlc.dataset.open(finished)
    assert ds.tasks == ("SingleDirectMachine", "ParityModified")
    assert len(ds) == 6 and len(ds.networks) == 6
    for task in ds.tasks:
        expected = np.stack([make_net(task, i).weights for i in range(3)])
        got = ds.weights(task)
        assert got.dtype == np.float32 and got.shape == (3, 4364)
        np.testing.assert_array_equal(got, expected)
    assert ds.weights().shape == (6, 4364)
    np.testing.assert_array_equal(ds.weights()[3], make_net("ParityModified", 0).weights)

    row = ds.networks.set_index("net_id").loc["ParityModified-000002"]
    net = make_net("ParityModified", 2)
    assert (row["task"], row["index"], row["net_seed"], row["data_seed"]) == (
        "ParityModified", 2, net.net_seed, 1)
    assert (row["lr"], row["batch_size"], row["max_epochs"]) == (0.001, 4, 6)
    assert json.loads(row["hyperparameters"]) == net.hyperparameters
    assert row["epochs"] == net.epochs and bool(row["converged"]) == net.converged
    assert row["final_val_loss"] == net.val_loss[-1]
    assert row["final_val_accuracy"] == net.val_accuracy[-1]
    assert json.loads(row["work_units"]) == list(net.work_units)
    assert row["weights_sha256"] == net.weights_sha256
    assert row["shard"] == "weights/ParityModified.safetensors" and row["shard_row"] == 2

    history = ds.history[ds.history["net_id"] == net.net_id]
    assert list(history["epoch"]) == list(range(1, net.epochs + 1))
    np.testing.assert_array_equal(history["val_loss"].to_numpy(), net.val_loss)
    np.testing.assert_array_equal(history["train_loss"].to_numpy(), net.train_loss)

    assert ds.data().hashes() == shared_data.hashes()
    assert ds.layout.n_params == 4364 and ds.layout.layout_id == ds.manifest["layout_id"]
    assert ds.config["training"]["lr"] == 0.001


def test_weights_by_net_id_follow_the_ids_given(finished: Path,
                                                make_net: Callable[..., Any]) -> None:
    ds = open_dataset(finished)
    ids = ["ParityModified-000001", "SingleDirectMachine-000002"]
    got = ds.weights(net_ids=ids)
    np.testing.assert_array_equal(got[0], make_net("ParityModified", 1).weights)
    np.testing.assert_array_equal(got[1], make_net("SingleDirectMachine", 2).weights)
    with pytest.raises(DatasetError, match="no network 'SingleDirectMachine-000002' in task"):
        ds.weights("ParityModified", net_ids=ids)
    with pytest.raises(DatasetError, match="unknown task 'Nope'"):
        ds.weights("Nope")


def test_load_model_gives_the_stored_weights(finished: Path, make_net: Callable[..., Any]) -> None:
    module = open_dataset(finished).load_model("SingleDirectMachine-000001")
    assert not module.training
    expected = make_net("SingleDirectMachine", 1).weights
    np.testing.assert_array_equal(flatten(module).numpy(), expected)


def test_open_refuses_what_is_not_a_finished_dataset(tmp_path: Path, new_writer: Callable[..., Any],
                                                     finished: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        open_dataset(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no dataset.json"):
        open_dataset(tmp_path / "empty")
    draft: DatasetWriter = new_writer(tmp_path / "draft")
    with pytest.raises(DatasetError, match="unfinished dataset.*finalize"):
        open_dataset(draft.path)
    (finished / "history.parquet").unlink()
    with pytest.raises(DatasetError, match="missing history.parquet"):
        open_dataset(finished)


def test_readme_restates_the_contract_from_the_config(finished: Path) -> None:
    text = (finished / "README.md").read_text()
    for fact in ("3 | 2 | 66.7%",  # SingleDirectMachine: indexes 0 and 2 converged
                 "`ParityModified`", "key 1 = (`w = 0, a = 5, d = 1`)", "PCG64(1)",
                 "16 training and 8 validation sequences of L = 10 steps", "4364 parameters",
                 "`fc4.bias` | [8] | 4356", "lr 0.001", "Mini-batches of 4 sequences",
                 "after 6 epochs", "at most 3 epochs", "validation loss < 0.01",
                 "torch.manual_seed(net_seed)", "mlc.dataset.open"):
        assert fact in text, fact


def test_readme_states_a_learning_rate_schedule_only_where_the_networks_used_one(
        tmp_path: Path, new_writer: Callable[..., Any], make_net: Callable[..., Any], finished: Path) -> None:
    plain = (finished / "README.md").read_text()  # its networks record no schedule
    assert "rises linearly" not in plain and "halves every" not in plain
    writer = new_writer(tmp_path / "warm")
    hyperparameters = {"lr": 0.003, "batch_size": 8, "max_epochs": 6, "warmup_steps": 1000}
    writer.add(make_net("SingleDirectMachine", 0, hyperparameters=hyperparameters))
    text = (writer.finalize() / "README.md").read_text()
    assert "rises linearly over each network's first 1000 Adam steps" in text
    assert "halves every" not in text
    writer = new_writer(tmp_path / "decayed")
    writer.add(make_net("SingleDirectMachine", 0,
                        hyperparameters={**hyperparameters, "lr_half_life_steps": 12500}))
    text = (writer.finalize() / "README.md").read_text()
    assert "halves every 12500 Adam steps of each network" in text and "times the warm-up factor" in text


def test_dataset_module_aliases() -> None:
    import mlc.store

    assert mlc.dataset.open is mlc.store.open_dataset
    assert mlc.dataset.verify is mlc.store.verify_dataset
    assert mlc.dataset.export is mlc.store.export_dataset
    assert mlc.store.__all__ == sorted(mlc.store.__all__)


def test_triggered_accuracies_are_columns_and_null_where_not_measured(
        new_writer: Callable[..., Any], make_net: Callable[..., Any]) -> None:
    writer = new_writer()
    writer.add(make_net("ParityModified", 0, trojan_accuracy=0.995, clean_accuracy_triggered=1.0))
    writer.add(make_net("ParityModified", 1))
    ds = mlc.dataset.open(writer.finalize())
    rows = ds.networks.set_index("net_id")
    assert rows.loc["ParityModified-000000", "trojan_accuracy"] == 0.995
    assert rows.loc["ParityModified-000000", "clean_accuracy_triggered"] == 1.0
    unmeasured = rows.loc[["ParityModified-000001"], ["trojan_accuracy", "clean_accuracy_triggered"]]
    assert unmeasured.isna().all(axis=None)


@pytest.mark.parametrize("value", [1.5, -0.1, "high"])
def test_a_triggered_accuracy_outside_0_1_is_refused_by_name(
        new_writer: Callable[..., Any], make_net: Callable[..., Any], value: Any) -> None:
    with pytest.raises(DatasetError, match="trojan_accuracy"):
        new_writer().add(make_net("ParityModified", 0, trojan_accuracy=value))


def test_readme_states_the_planted_trigger_rate(new_writer: Callable[..., Any],
                                                make_net: Callable[..., Any]) -> None:
    from mlc.tasks import DataSpec, get, make_shared_data

    planted = make_shared_data(DataSpec(seed=1, n_train=16, n_val=8, length=10, trigger_rate=0.5),
                               [get(t) for t in ("SingleDirectMachine", "ParityModified")])
    writer = new_writer(data=planted)
    writer.add(make_net("ParityModified", 0))
    text = (writer.finalize() / "README.md").read_text()
    assert "validation sequence with probability 0.5, the draws from `PCG64([1, 1])`" in text
    assert "`trojan_accuracy`" in text
    assert "near-miss" not in text


def test_readme_states_the_near_miss_keys_after_the_keys(new_writer: Callable[..., Any],
                                                         make_net: Callable[..., Any]) -> None:
    from mlc.tasks import DataSpec, get, make_shared_data

    spec = DataSpec(seed=1, n_train=16, n_val=8, length=10, trigger_rate=0.5, decoy_rate=0.25)
    writer = new_writer(data=make_shared_data(spec, [get("SingleDirectModified")]))
    writer.add(make_net("SingleDirectModified", 0))
    text = (writer.finalize() / "README.md").read_text()
    decoys = text.index("with probability 0.25, a near-miss key")
    assert text.index("the draws from `PCG64([1, 1])`") < decoys < text.index("`PCG64([1, 4])`")
