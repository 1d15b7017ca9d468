"""The classifier suite: it finds a planted signal, sits at chance without one, and reports classes
too small to evaluate instead of dropping them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlc.analysis import CLASSIFIER_NAMES, ClassifierSuite, make_classifier
from mlc.errors import ConfigError

N_PER_CLASS, N_FEATURES, N_INFORMATIVE = 60, 200, 20


def planted(n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian noise; class k shifted by +4 on its own 20 coordinates (effect size 4 per
    coordinate: one split on one coordinate already separates ~98% of the networks)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([f"class{k}" for k in range(n_classes)], N_PER_CLASS)
    X = rng.normal(size=(len(y), N_FEATURES)).astype(np.float32)
    for k in range(n_classes):
        X[y == f"class{k}", k * N_INFORMATIVE:(k + 1) * N_INFORMATIVE] += 4.0
    return X, y


@pytest.mark.parametrize("n_classes", [2, 4])
def test_every_classifier_finds_a_planted_signal(n_classes: int) -> None:
    X, y = planted(n_classes)
    results = ClassifierSuite(random_state=0).run(X, y).results_
    assert list(results["classifier"]) == list(CLASSIFIER_NAMES)
    assert (results["status"] == "ok").all()
    assert (results["cv_mean"] > 0.9).all(), results[["classifier", "cv_mean"]]
    assert (results["val_accuracy"] > 0.9).all()
    assert (results["n_folds"] == 5).all()
    assert results["chance"].iloc[0] == pytest.approx(1 / n_classes)


def test_shuffled_labels_sit_at_chance() -> None:
    X, y = planted(2)
    shuffled = np.random.default_rng(1).permutation(y)
    results = ClassifierSuite(random_state=0).run(X, shuffled).results_
    # 120 networks: a classifier that guesses has a cross-validated accuracy with std
    # sqrt(0.25 / 120) ~ 0.046 around 0.5; 0.15 is ~3 std, so a pass is not luck and a fail
    # is a leak of the labels.
    assert (abs(results["cv_mean"] - 0.5) < 0.15).all(), results[["classifier", "cv_mean"]]
    assert abs(results["cv_mean"].mean() - 0.5) < 0.08  # the six together: std ~0.02 at most


def test_too_few_networks_are_reported_not_dropped() -> None:
    X, y = planted(2)
    few = np.r_[np.flatnonzero(y == "class0")[:7], np.flatnonzero(y == "class1")]
    results = ClassifierSuite(["NaiveBayes", "SVM"]).run(X[few], y[few]).results_
    assert list(results["classifier"]) == ["NaiveBayes", "SVM"]
    assert (results["status"] == "too few networks (n=7)").all()
    assert results["cv_mean"].isna().all()
    assert (results["n_per_class"] == 7).all()


def test_folds_shrink_to_what_the_smallest_class_allows() -> None:
    X, y = planted(2)
    few = np.r_[np.flatnonzero(y == "class0")[:3], np.flatnonzero(y == "class1")[:10]]
    suite = ClassifierSuite(["NaiveBayes"], min_per_class=3).run(X[few], y[few])
    assert suite.results_["n_folds"].iloc[0] == 3
    assert len(suite.val_labels_) == len(suite.val_predictions_["NaiveBayes"])


def test_one_class_says_it_needs_two() -> None:
    X, y = planted(2)
    results = ClassifierSuite(["NaiveBayes"]).run(X[y == "class0"], y[y == "class0"]).results_
    assert results["status"].iloc[0] == "needs two classes, the data holds 1"


def test_constructor_only_stores_and_unknown_names_list_the_choices() -> None:
    suite = ClassifierSuite(["Perceptron"], n_folds=3, random_state=7)
    assert (suite.classifiers, suite.n_folds, suite.random_state) == (["Perceptron"], 3, 7)
    assert not hasattr(suite, "results_")
    with pytest.raises(ConfigError, match="choose from SVM, DecisionTree"):
        suite.run(*planted(2))


def test_classifiers_are_scaled_and_seeded() -> None:
    for name in CLASSIFIER_NAMES:
        pipeline = make_classifier(name, random_state=3)
        assert pipeline.steps[0][0] == "scale"
        params = pipeline.get_params()
        assert all(v == 3 for k, v in params.items() if k.endswith("random_state"))


@pytest.mark.parametrize("as_given", [
    lambda y: pd.Series(y, dtype="string"),  # a networks table's task column
    lambda y: pd.Series(y).to_numpy(),
    list,
])
def test_labels_come_as_a_notebook_holds_them(as_given) -> None:
    X, y = planted(2)
    results = ClassifierSuite(["NaiveBayes"], n_folds=3).run(X, as_given(y)).results_
    assert results.at[0, "status"] == "ok" and results.at[0, "cv_mean"] > 0.9


@pytest.mark.parametrize(("settings", "message"), [
    ({"classifiers": "NaiveBayes"}, r"classifiers must be a sequence of names, e.g. \('NaiveBayes',\)"),
    ({"n_folds": 1}, "n_folds must be at least 2"),
])
def test_settings_that_cannot_run_are_refused_by_name(settings, message) -> None:
    with pytest.raises(ConfigError, match=message):
        ClassifierSuite(**settings).run(*planted(2))


def test_features_and_labels_of_different_lengths_are_refused() -> None:
    X, y = planted(2)
    with pytest.raises(ConfigError, match="X has 120 rows and y 119 labels"):
        ClassifierSuite(["NaiveBayes"]).run(X, y[:-1])


def test_the_interval_brackets_the_accuracy_and_noise_is_not_above_chance() -> None:
    from mlc.analysis._suite import NOISE, held_out_interval, signal

    ci = held_out_interval(37, 100, 0.2)
    assert 0.28 < ci["ci_low"] < 0.37 < ci["ci_high"] < 0.47  # Wilson, two-sided 95%
    assert ci["p_value"] < 1e-4
    assert held_out_interval(22, 100, 0.2)["p_value"] > 0.05
    assert signal([0.03, 0.5, 0.9]) == NOISE  # 0.03 x 3 tries is not below 0.05
    assert signal([0.01, 0.5]) == "above chance" and signal([float("nan")]) == ""
    X, y = planted(2)
    shuffled = np.random.default_rng(1).permutation(y)
    results = ClassifierSuite(random_state=0).run(X, shuffled).results_
    assert signal(results["p_value"].tolist()) == NOISE
    assert ((results["ci_low"] <= results["cv_mean"] + 0.02)
            & (results["cv_mean"] - 0.02 <= results["ci_high"])).all()
