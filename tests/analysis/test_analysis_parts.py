"""Each report part on synthetic networks: it finds the planted signals, and every row it cannot
evaluate (a missing twin, too few networks, one device kind) says why instead of disappearing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_fakes import FakeDataset, mlds_gru_layout, synthetic_dataset

from mlc.analysis import (
    FEATURE_SETS,
    MLDS_TABLE2,
    Baselines,
    DataOverview,
    DeviceComparison,
    LearningCurve,
    MergedData,
    Projections,
    TaskIdentification,
    TrojanDetection,
    feature_matrices,
    loss_features,
    merge_datasets,
    weight_statistics,
)

FAST = ("SVM", "NaiveBayes")  # the cheap ones, where a test is about rows rather than models


@pytest.fixture(scope="module")
def data(ds1: FakeDataset, ds2: FakeDataset) -> MergedData:
    return merge_datasets([ds1, ds2])


@pytest.fixture(scope="module")
def features(data: MergedData) -> dict[str, np.ndarray]:
    return feature_matrices(data)


@pytest.fixture(scope="module")
def trojan(data: MergedData, features: dict[str, np.ndarray]) -> TrojanDetection:
    return TrojanDetection(FAST, n_folds=3).run(data, features)


def test_weight_statistics_ignore_hidden_unit_order() -> None:
    layout = mlds_gru_layout()
    weights = np.random.default_rng(0).normal(size=(3, 4364)).astype(np.float32)
    permuted = weights.copy()
    order = np.random.default_rng(1).permutation(12)  # reorder fc1's 12 output units
    fc1_w, fc1_b, fc2_w = (layout.entries[i] for i in (16, 17, 18))
    assert (fc1_w.name, fc1_b.name, fc2_w.name) == ("fc1.weight", "fc1.bias", "fc2.weight")

    def block(entry):  # noqa: ANN001, ANN202 - a view of one tensor of every network
        size = int(np.prod(entry.shape))
        return permuted[:, entry.offset:entry.offset + size].reshape(3, *entry.shape)

    block(fc1_w)[:] = block(fc1_w)[:, order, :]
    block(fc1_b)[:] = block(fc1_b)[:, order]
    block(fc2_w)[:] = block(fc2_w)[:, :, order]
    assert not np.allclose(weights, permuted)
    before, names = weight_statistics(weights, layout)
    after, _ = weight_statistics(permuted, layout)
    np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-5)
    n_singular = 5 + 7 * 12 + 12 + 12 + 12 + 8  # min(shape) of each of the 20 matrices
    assert before.shape == (3, 4 * len(layout.entries) + n_singular) == (3, len(names))


def test_loss_features_stay_finite_for_diverged_networks() -> None:
    nets = pd.DataFrame({"final_train_loss": [0.5, 0.0, np.inf, np.nan],
                         "final_val_loss": [0.1, 1e-30, 1.0, np.nan]})
    out = loss_features(nets)
    assert out.shape == (4, 2) and np.isfinite(out).all()
    assert out[3, 0] == out.max()  # NaN counts as the worst loss


def test_trojan_table_has_every_machine_with_mlds_beside_ours(trojan: TrojanDetection) -> None:
    table = trojan.table_.set_index("machine")
    assert list(table.index) == ["EightBit", "SingleDirect", "SingleInvert", "SimpleXOR", "Parity"]
    assert list(table.columns[3:]) == ["SVM", "SVM (MLDS)", "NaiveBayes", "NaiveBayes (MLDS)",
                                       "signal"]
    for machine in ("SingleDirect", "Parity"):
        assert table.at[machine, "status"] == "ok"
        assert table.at[machine, "signal"] == "above chance"
        assert table.at[machine, "n_per_class"] == 24
        assert table.loc[machine, ["SVM", "NaiveBayes"]].min() > 0.9
    assert table.at["EightBit", "status"] == "no EightBitModified networks in the data"
    assert table.at["SingleInvert", "status"].startswith("no SingleInvertMachine or")
    assert table.at["SimpleXOR", "status"] == "too few networks (n=6)"
    assert np.isnan(table.at["SimpleXOR", "SVM"])
    assert table.at["SimpleXOR", "SVM (MLDS)"] == MLDS_TABLE2["SimpleXOR"]["SVM"] == 0.86
    assert set(trojan.results_["features"]) == set(FEATURE_SETS)
    cv = trojan.cv_table_.set_index("machine")
    assert cv.at["Parity", "n_folds"] == 3 and cv.at["Parity", "NaiveBayes cv_mean"] > 0.9


def test_task_identification_finds_tasks_and_lists_small_ones(
        data: MergedData, features: dict[str, np.ndarray]) -> None:
    part = TaskIdentification(FAST, n_folds=3).run(data, features)
    results = part.results_
    raw = results[(results["features"] == "raw weights")
                  & (results["subject"] == "all tasks")].set_index("classifier")
    assert (raw["n_classes"] == 5).all() and (raw["cv_mean"] > 0.9).all()
    per_task = part.per_task_.set_index("task")
    assert per_task.at["SimpleXORMachine", "status"] == "too few networks (n=6)"
    assert np.isnan(per_task.at["SimpleXORMachine", "recall"])
    assert per_task.at["EightBitMachine", "status"] == "ok"
    assert per_task.at["EightBitMachine", "recall"] > 0.9
    confusion = part.confusions_["all tasks"]
    assert confusion.shape == (5, 5)
    assert confusion.to_numpy().sum() == 5 * 24  # every network, held out by its fold
    # the DS1 machines alone (the headline's question): SimpleXORMachine has too few networks
    assert list(part.confusions_["DS1 machines"].index) == [
        "EightBitMachine", "ParityMachine", "SingleDirectMachine"]
    ds1 = part.results_[part.results_["subject"] == "DS1 machines"]
    assert (ds1["n_classes"] == 3).all() and (ds1["status"] == "ok").all()
    assert (ds1["ci_low"] < ds1["cv_mean"]).all() and (ds1["cv_mean"] <= ds1["ci_high"]).all()


def test_learning_curve_grows_and_reports_small_pairs(
        data: MergedData, features: dict[str, np.ndarray]) -> None:
    table = LearningCurve(n_repeats=2).run(data, features).table_
    assert set(table["question"]) == {"task identification", "trojan: SingleDirect",
                                      "trojan: SimpleXOR", "trojan: Parity"}
    xor = table[table["question"] == "trojan: SimpleXOR"]
    assert list(xor["status"]) == ["too few networks (n=6)"]
    curve = table[table["question"] == "trojan: Parity"]
    assert list(curve["n_train_per_class"]) == [5, 10, 19]  # 80% of 24, the largest size
    assert curve["accuracy_mean"].iloc[-1] > 0.9


def test_device_comparison_finds_a_planted_device_trace(
        data: MergedData, features: dict[str, np.ndarray]) -> None:
    part = DeviceComparison(FAST, n_folds=3).run(data, features)
    assert part.kinds_ == ("cpu", "cuda")
    table = part.table_.set_index("task")
    assert table.at["SingleDirectModified", "status"] == "ok"
    assert table.at["SingleDirectModified", "NaiveBayes"] > 0.9
    assert table.at["ParityMachine", "status"] == "only cpu-trained networks for this task (n=24)"
    counts = part.counts_.set_index("task")
    assert (counts.at["SingleDirectMachine", "cuda"], counts.at["ParityMachine", "cuda"]) == (12, 0)


def test_device_comparison_says_plainly_when_one_kind_is_present() -> None:
    ds = synthetic_dataset({("SingleDirectMachine", "cpu"): 12, ("ParityMachine", "cpu"): 12})
    data = merge_datasets([ds])
    part = DeviceComparison(FAST).run(data, feature_matrices(data))
    assert part.kinds_ == ("cpu",)
    assert (part.table_["status"] == "only cpu-trained networks in the data (n=12)").all()
    assert "only cpu-trained networks (24)" in part.section_.paragraphs[0]


def test_baselines_say_the_weights_beat_the_loss(trojan: TrojanDetection) -> None:
    summary = Baselines().run([trojan.results_]).summary_.set_index("subject")
    assert summary.at["Parity", "verdict"] == "the weights say more than the loss"
    assert summary.at["Parity", "raw weights"] > 0.9
    assert summary.at["Parity", "final losses"] < 0.8  # losses carry no planted signal
    assert summary.at["SimpleXOR", "verdict"] == "too few networks (n=6)"


def test_projections_skip_umap_when_too_few_points() -> None:
    ds = synthetic_dataset({("SingleDirectMachine", "cpu"): 3, ("ParityMachine", "cpu"): 3})
    data = merge_datasets([ds])
    part = Projections(min_points_umap=10).run(data, feature_matrices(data))
    assert part.umap_note_ == "UMAP needs at least 10 networks, the data has 6; only PCA is shown"
    assert part.coords_["umap_1"].isna().all() and part.coords_["pca_1"].notna().all()
    assert [f.name for f in part.section_.figures] == ["projection_pca"]  # no placeholder
    assert "No UMAP figure: UMAP needs at least 10 networks" in " ".join(part.section_.paragraphs)


def _best_rows(weights: tuple[float, float], loss: tuple[float, float]) -> pd.DataFrame:
    """Suite results of one subject: the best raw-weight and loss-only (cv_mean, cv_std), chance 50%."""
    rows = [{"question": "trojan detection", "subject": "X", "features": name, "classifier": "SVM",
             "n_per_class": 24, "cv_mean": mean, "cv_std": std, "chance": 0.5, "status": "ok"}
            for name, (mean, std) in (("raw weights", weights), ("final losses", loss))]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("weights", "loss", "verdict"), [
    # SingleInvert in a walkthrough: a noisy loss classifier hid a clear weight result
    ((0.88, 0.10), (0.55, 0.22), "the weights beat chance and the loss does not, but the two are "
                                 "within the noise"),
    ((0.55, 0.22), (0.88, 0.10), "the loss beats chance and the weights do not, but the two are "
                                 "within the noise"),
    ((0.52, 0.05), (0.55, 0.22), "neither the weights nor the loss beat chance"),
    ((0.95, 0.02), (0.55, 0.05), "the weights say more than the loss"),
    ((0.60, 0.02), (0.95, 0.02), "the loss says more than the weights"),
    ((0.90, 0.03), (0.88, 0.03), "the loss alone does as well as the weights"),
])
def test_each_side_beats_chance_by_its_own_noise(weights: tuple[float, float],
                                                   loss: tuple[float, float], verdict: str) -> None:
    summary = Baselines(("raw weights", "final losses")).run([_best_rows(weights, loss)]).summary_
    assert summary.at[0, "verdict"] == verdict


def test_the_data_overview_names_the_datasets_in_the_order_given(ds1: FakeDataset,
                                                                 ds2: FakeDataset) -> None:
    """As the report's title does ("ds2 + ds1"), not sorted by name."""
    overview = DataOverview().run(merge_datasets([ds2, ds1]))
    assert overview.section_.paragraphs[0].startswith("Datasets: ds2, ds1.")
    assert list(overview.table_["dataset"].unique()) == ["ds2", "ds1"]  # the table under it too
