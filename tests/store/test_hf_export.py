"""The Hugging Face export: a folder `datasets.load_dataset("parquet", data_dir=...)` reads as is,
one row per network with its settings, metrics, flat weights and history, and a dataset card."""

import datasets
import numpy as np
import pytest

import mlc.dataset
from mlc.errors import DatasetError


def test_the_hf_folder_loads_with_the_datasets_package(finished, tmp_path):
    out = mlc.dataset.export_hf(finished, tmp_path / "hf", per_task=2)
    loaded = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "cache"))["train"]
    ds = mlc.dataset.open(finished)
    assert loaded.num_rows == 4
    row = loaded[0]
    assert row["net_id"] == "ParityModified-000000" and row["lr"] == 0.001
    weights = np.asarray(row["weights"], dtype=np.float32)
    np.testing.assert_array_equal(weights, ds.weights(net_ids=[row["net_id"]])[0])
    history = ds.history[ds.history["net_id"] == row["net_id"]]
    np.testing.assert_array_equal(np.asarray(row["val_loss"], np.float32), history["val_loss"].to_numpy())
    card = (out / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "load_dataset" in card and "# store-test" in card
    assert (out / "layout.json").read_text() == (finished / "layout.json").read_text()


def test_an_existing_folder_is_not_overwritten(finished, tmp_path):
    (tmp_path / "hf").mkdir()
    with pytest.raises(DatasetError, match="exists"):
        mlc.dataset.export_hf(finished, tmp_path / "hf")
