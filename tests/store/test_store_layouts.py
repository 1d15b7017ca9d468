"""A dataset of several weight layouts (a width or depth sweep): written as format 2, read one layout
at a time, verified shard by shard, exported; a dataset of one layout keeps format 1's files."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch

import mlc.dataset
import mlc.models
from mlc.errors import DatasetError
from mlc.store import DatasetWriter
from mlc.tasks import DataSpec, SharedData, shared_data_for_tasks
from mlc.work._records import FinishedNetwork

TASKS = ("DigitsClean", "DigitsBadNets")
SETTINGS = ({"width": 4, "depth": 1}, {"width": 6, "depth": 2})  # two layouts of digits-mlp
LAYOUTS = tuple(mlc.models.layout("digits-mlp", s) for s in SETTINGS)


@pytest.fixture(scope="module")
def digits() -> SharedData:
    return shared_data_for_tasks(DataSpec(seed=1, n_train=16, n_val=8), TASKS, {})


def _net(task: str, index: int) -> FinishedNetwork:
    """Network `index` of `task`: even indices in the first layout, odd ones in the second (so a
    task's table rows alternate layouts, as an activation x width sweep numbers them)."""
    rng = np.random.default_rng([zlib.crc32(task.encode()), index])
    settings, layout = SETTINGS[index % 2], LAYOUTS[index % 2]
    return FinishedNetwork(
        net_id=f"{task}-{index:06d}", dataset="sweep", task=task, index=index, net_seed=index,
        data_seed=1, model="digits-mlp", layout_id=layout.layout_id,
        hyperparameters={"lr": 0.01, **settings, "activation": "relu", "init": "default"},
        weights=rng.standard_normal(layout.n_params).astype(np.float32),
        train_loss=rng.random(2).astype(np.float32), val_loss=rng.random(2).astype(np.float32),
        val_accuracy=rng.random(2).astype(np.float32), converged=True, wall_time_s=1.0,
        device_kind="cpu", device_name="test", torch_version="t", platform="p", host_id="h",
        work_units=("wu",))


def _writer(root: Path, digits: SharedData) -> DatasetWriter:
    return DatasetWriter.create(root, name="sweep", preset="ds4-smoke", config={"sweep": 1},
                                model="digits-mlp", data=digits, spec_version="ds4-1", layouts=LAYOUTS)


@pytest.fixture
def two_layouts(tmp_path: Path, digits: SharedData) -> Path:
    writer = _writer(tmp_path / "ds", digits)
    for task in TASKS:
        for index in range(5):
            writer.add(_net(task, index))
    return writer.finalize()


def test_several_layouts_are_format_2_with_a_layout_file_and_shard_each(two_layouts: Path) -> None:
    manifest = json.loads((two_layouts / "dataset.json").read_text())
    hashes = [layout.layout_id.split("/")[1] for layout in LAYOUTS]
    assert manifest["format"] == "mlc-dataset/2" and "layout_id" not in manifest
    assert manifest["layouts"] == [{"layout_id": x.layout_id, "n_params": x.n_params} for x in LAYOUTS]
    assert sorted(manifest["files"]) == sorted([
        "config.json", "data.safetensors", "history.parquet", "networks.parquet", "README.md",
        *(f"layouts/{h}.json" for h in hashes),
        *(f"weights/{h}/{task}.safetensors" for h in hashes for task in TASKS)])
    readme = (two_layouts / "README.md").read_text()
    assert "2 weight layouts" in readme and all(x.layout_id in readme for x in LAYOUTS)


def test_weights_read_one_layout_at_a_time(two_layouts: Path) -> None:
    ds = mlc.dataset.open(two_layouts)
    assert list(ds.layouts) == [x.layout_id for x in LAYOUTS]
    with pytest.raises(DatasetError, match="2 weight layouts"):
        _ = ds.layout
    with pytest.raises(DatasetError, match=f"several weight layouts .*{LAYOUTS[1].layout_id}"):
        ds.weights("DigitsClean")
    assert list(ds.networks["index"][ds.networks["task"] == "DigitsClean"]) == [0, 1, 2, 3, 4]
    for k, layout in enumerate(LAYOUTS):
        w = ds.weights("DigitsBadNets", layout=layout.layout_id)
        expected = [_net("DigitsBadNets", i).weights for i in range(k, 5, 2)]
        np.testing.assert_array_equal(w, np.stack(expected))
        assert ds.weights(layout=layout.layout_id).shape == (2 * len(expected), layout.n_params)
    module = ds.load_model("DigitsClean-000003")  # built with its own width and depth
    torch.testing.assert_close(mlc.models.flatten(module), torch.from_numpy(_net("DigitsClean", 3).weights))
    with pytest.raises(DatasetError, match="unknown layout"):
        ds.weights(layout="digits-mlp/000000000000")


def test_verify_checks_every_layout_and_catches_a_corrupted_second_layout_shard(two_layouts: Path) -> None:
    assert mlc.dataset.verify(two_layouts).ok
    shard = two_layouts / f"weights/{LAYOUTS[1].layout_id.split('/')[1]}/DigitsBadNets.safetensors"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x40  # a bit of the last network's weights
    shard.write_bytes(bytes(data))
    problems = mlc.dataset.verify(two_layouts).problems
    name = shard.relative_to(two_layouts).as_posix()
    assert f"{name}: SHA-256 does not match the manifest (corrupted or changed)" in problems
    assert any(p.startswith(f"{name}: 1 rows do not match their weights_sha256") for p in problems)


def test_a_reopened_dataset_grows_and_the_release_subset_keeps_both_layouts(
    two_layouts: Path, digits: SharedData, tmp_path: Path
) -> None:
    writer = _writer(two_layouts, digits)  # create again: the same dataset, reopened
    assert writer.add(_net("DigitsClean", 5)) and not writer.add(_net("DigitsClean", 1))
    writer.finalize()
    assert mlc.dataset.verify(two_layouts).ok and len(mlc.dataset.open(two_layouts)) == 11
    with pytest.raises(DatasetError, match="different dataset.*layouts"):
        DatasetWriter.create(two_layouts, name="sweep", preset="ds4-smoke", config={"sweep": 1},
                             model="digits-mlp", data=digits, spec_version="ds4-1", layouts=LAYOUTS[:1])
    release = mlc.dataset.export(two_layouts, tmp_path / "out", per_task=3).directory
    subset = mlc.dataset.open(release)
    assert mlc.dataset.verify(release).ok and list(subset.layouts) == [x.layout_id for x in LAYOUTS]
    np.testing.assert_array_equal(subset.weights("DigitsClean", layout=LAYOUTS[1].layout_id),
                                  _net("DigitsClean", 1).weights[None])


def test_the_hf_export_of_several_layouts_loads_with_rows_of_their_own_length(
    two_layouts: Path, tmp_path: Path
) -> None:
    out = mlc.dataset.export_hf(two_layouts, tmp_path / "hf")
    loaded = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "cache"))["train"]
    assert loaded.num_rows == 10
    sizes = {x.layout_id: x.n_params for x in LAYOUTS}
    for row in loaded:
        assert len(row["weights"]) == sizes[row["layout_id"]]
        want = _net(row["task"], row["index"]).weights
        np.testing.assert_array_equal(np.asarray(row["weights"], np.float32), want)
    card = (out / "README.md").read_text()
    assert "`layout_id` column" in card and all(x.layout_id in card for x in LAYOUTS)
    assert sorted(p.name for p in (out / "layouts").iterdir()) == [
        f"{x.layout_id.split('/')[1]}.json" for x in sorted(LAYOUTS, key=lambda x: x.layout_id.split("/")[1])]


def test_one_layout_keeps_format_1_files_and_manifest_keys(finished: Path) -> None:
    """The files and manifest keys of a one-layout dataset, as every MLC before layouts wrote them."""
    manifest: dict[str, Any] = json.loads((finished / "dataset.json").read_text())
    assert manifest["format"] == "mlc-dataset/1"
    assert sorted(manifest) == sorted([
        "format", "name", "preset", "spec_version", "created", "finalized", "model", "layout_id",
        "n_params", "tasks", "data", "data_hashes", "inputs", "n_networks", "counts", "files",
        "manifest_sha256"])
    assert sorted(manifest["files"]) == [
        "README.md", "config.json", "data.safetensors", "history.parquet", "layout.json",
        "networks.parquet", "weights/ParityModified.safetensors", "weights/SingleDirectMachine.safetensors"]
    assert list(mlc.dataset.open(finished).networks["shard"].unique()) == [
        "weights/SingleDirectMachine.safetensors", "weights/ParityModified.safetensors"]
