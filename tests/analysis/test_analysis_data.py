"""Merging datasets for analysis: tables concatenated, weights aligned row for row, classes capped
before weights are read, and everything left out counted."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from analysis_fakes import FakeDataset, FakeLayout, mlds_gru_layout, synthetic_dataset

from mlc.analysis import merge_datasets, open_datasets
from mlc.errors import ConfigError, DatasetError


def small(name: str = "a", seed: int = 0, **counts: int) -> FakeDataset:
    return synthetic_dataset({(task, "cpu"): n for task, n in counts.items()}, name=name,
                             seed=seed)


def test_weights_follow_the_merged_rows(ds1: FakeDataset, ds2: FakeDataset) -> None:
    data = merge_datasets([ds1, ds2])
    assert len(data.networks) == len(ds1.networks) + len(ds2.networks)
    assert set(data.networks["dataset"]) == {"ds1", "ds2"}
    for source in (ds1, ds2):
        mine = data.networks["dataset"] == source.manifest["name"]
        ids = data.networks.loc[mine, "net_id"].tolist()
        np.testing.assert_array_equal(data.weights[mine.to_numpy()], source.weights(net_ids=ids))
    assert data.weights.dtype == np.float32
    assert list(data.networks.index) == list(range(len(data.networks)))


def test_classes_are_capped_by_first_index_before_reading(ds1: FakeDataset) -> None:
    data = merge_datasets([ds1], max_per_class=5)
    counts = data.networks.groupby(["task", "device_kind"]).size()
    assert counts.max() == 5
    assert data.networks["index"].max() == 4
    summary = data.summary.set_index(["task", "device_kind"])
    assert summary.loc[("ParityMachine", "cpu"), "n_networks"] == 24
    assert summary.loc[("ParityMachine", "cpu"), "n_selected"] == 5


def test_converged_only_leaves_out_the_rest() -> None:
    data = merge_datasets([small(SingleDirectMachine=8)], converged_only=True)
    assert data.networks["converged"].all()
    assert data.summary["n_analysed"].iloc[0] == data.summary["n_converged"].iloc[0] == 6


def test_the_history_holds_the_curves_of_the_networks_analysed_only() -> None:
    """Two datasets of one preset share net_ids: each curve stays with its own dataset."""
    a, b = small("a", SingleDirectMachine=8), small("b", seed=1, SingleDirectMachine=8)
    data = merge_datasets([a, b], converged_only=True)
    history = data.history
    analysed = set(zip(data.networks["dataset"], data.networks["net_id"], strict=True))
    assert set(zip(history["dataset"], history["net_id"], strict=True)) == analysed
    assert len(analysed) == 12 and (history["task"] == "SingleDirectMachine").all()
    epochs = history.groupby(["dataset", "net_id"])["epoch"].max()
    expected = {(row.dataset, row.net_id): row.epochs for row in data.networks.itertuples()}
    assert epochs.to_dict() == expected  # whole curves, epochs 1..epochs


def test_nonfinite_weights_are_excluded_and_counted() -> None:
    ds = small(SingleDirectMachine=6)
    ds._weights[2, 100] = np.nan
    data = merge_datasets([ds])
    assert len(data.networks) == 5
    assert np.isfinite(data.weights).all()
    row = data.summary.iloc[0]
    assert (row["n_selected"], row["n_nonfinite"], row["n_analysed"]) == (6, 1, 5)


def test_different_layouts_cannot_be_merged() -> None:
    other = small("b", ParityMachine=3)
    other.layout = FakeLayout(mlds_gru_layout().entries, layout_id="other-model/123")
    with pytest.raises(DatasetError, match="analyse them separately"):
        merge_datasets([small(SingleDirectMachine=3), other])


def test_a_missing_column_names_it() -> None:
    ds = small(SingleDirectMachine=3)
    ds.networks = ds.networks.drop(columns="device_kind")
    with pytest.raises(DatasetError, match="no column device_kind"):
        merge_datasets([ds])


def test_same_name_twice_stays_distinguishable() -> None:
    data = merge_datasets([small(SingleDirectMachine=3), small(seed=1, ParityMachine=3)])
    assert sorted(data.networks["dataset"].unique()) == ["a", "a (2)"]


def test_nothing_to_analyse_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        merge_datasets([])
    with pytest.raises(ConfigError, match="at least one dataset directory"):
        open_datasets([])
    ds = small(SingleDirectMachine=3)
    ds.networks = ds.networks.assign(converged=False)
    with pytest.raises(DatasetError, match="drop converged_only"):
        merge_datasets([ds], converged_only=True)


def test_fake_layout_matches_mlds_gru() -> None:
    import mlc.models

    real = mlc.models.layout("mlds-gru")
    fake = mlds_gru_layout()
    assert [(e.name, e.shape, e.offset) for e in real.entries] == \
        [(e.name, e.shape, e.offset) for e in fake.entries]
    assert real.n_params == fake.n_params == 4364


def test_importing_analysis_loads_neither_torch_nor_umap() -> None:
    code = ("import sys, mlc.analysis; "
            "print(sorted(m for m in ('torch', 'umap', 'numba', 'mlc.store') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_network_in_two_datasets_is_analysed_once_and_its_copies_counted() -> None:
    """The same dataset passed twice (or with its export) would put copies of a network on both
    sides of every train/test split: every classifier scored 100% on a task pair at chance."""
    ds, other = small(SingleDirectMachine=6, ParityMachine=4), small(seed=1, SingleDirectMachine=3)
    data = merge_datasets([ds, other, ds])
    assert len(data.networks) == 13 and data.networks["weights_sha256"].is_unique
    assert set(data.networks["dataset"]) == {"a", "a (2)"}  # the first copy is the one kept
    summary = data.summary.set_index(["dataset", "task"])
    assert summary.loc[("a (3)", "SingleDirectMachine"), "n_duplicates"] == 6
    assert summary.loc[("a (3)", "ParityMachine"), ["n_duplicates", "n_selected"]].tolist() == [4, 0]
    assert summary["n_duplicates"].sum() == 10 and summary["n_analysed"].sum() == 13


def test_networks_equal_within_one_dataset_are_not_copies() -> None:
    ds = small(SingleDirectMachine=6)
    ds._weights[1:4] = np.nan  # three networks that diverged alike: the same hash
    ds.networks.loc[1:3, "weights_sha256"] = "all-nan"
    data = merge_datasets([ds])
    row = data.summary.iloc[0]
    assert (row["n_duplicates"], row["n_nonfinite"], row["n_analysed"]) == (0, 3, 3)
