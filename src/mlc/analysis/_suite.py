"""The classifiers of the seed's Table 2 and the one protocol every report part evaluates them with.

Protocol: stratified k-fold cross-validation (k = 5 unless a class is smaller), shuffled with
`random_state`. The first fold's held-out part is the "validation accuracy" (with k = 5 it is the
original's 80/20 split: 800 training and 200 validation networks for N = 1,000 per class); the mean
and std over all k folds are the cross-validated numbers. Reusing the first fold as the split costs no
extra fit, which matters: one fit of a tree ensemble on 8,000 x 4,364 weights takes tens of seconds.
Every network's held-out prediction (scikit-learn's `cross_val_predict`) also gives the accuracy over
all n networks a 95% interval and a p-value against chance, so a row that is noise says so.

Every classifier sits in a Pipeline behind a StandardScaler, as the issue asks: it does nothing to the
tree models' decisions and puts the SVM, MLP and NaiveBayes on equal footing across weight scales.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Self

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.ensemble import AdaBoostClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from mlc.errors import ConfigError

__all__ = [
    "ABOVE_CHANCE",
    "CLASSIFIER_NAMES",
    "MIN_PER_CLASS",
    "NOISE",
    "OK",
    "RESULT_COLUMNS",
    "SIGNIFICANCE",
    "ClassifierSuite",
    "check_name_lists",
    "fitting",
    "held_out_interval",
    "long_results",
    "make_classifier",
    "signal",
    "status_results",
    "too_few_status",
]

CLASSIFIER_NAMES = ("SVM", "DecisionTree", "RandomForest", "MLP", "AdaBoost", "NaiveBayes")
MIN_PER_CLASS = 10  # below this a 5-fold split leaves < 2 networks of a class per fold
OK = "ok"
RESULT_COLUMNS = ("classifier", "n_classes", "n_networks", "n_per_class", "n_folds",
                  "val_accuracy", "cv_mean", "cv_std", "ci_low", "ci_high", "p_value", "chance",
                  "status")
SIGNIFICANCE = 0.05  # a row is "above chance" below this p-value (Bonferroni over its classifiers)
ABOVE_CHANCE = "above chance"
NOISE = "noise: not above chance"


def check_name_lists(**lists: object) -> None:
    """Classifier and feature-set names come as sequences; a string alone would be read letter by
    letter ("unknown classifier 'N'")."""
    for key, value in lists.items():
        if isinstance(value, str):
            raise ConfigError(f"{key} must be a sequence of names, e.g. ({value!r},), not one string")


def too_few_status(n: int) -> str:
    """The status of a row whose smallest class has only `n` networks."""
    return f"too few networks (n={n})"


def signal(p_values: Sequence[float]) -> str:
    """Whether a row of several classifiers' results shows anything: the best one's p-value, times
    the number of classifiers tried (Bonferroni: the best of six guessers beats chance at p < 0.05
    one time in four), below `SIGNIFICANCE`. Rows without a p-value say nothing ("")."""
    known = [p for p in p_values if not pd.isna(p)]
    if not known:
        return ""
    return ABOVE_CHANCE if min(known) * len(known) < SIGNIFICANCE else NOISE


def held_out_interval(n_correct: int, n: int, chance: float) -> dict[str, float]:
    """The 95% Wilson interval of an accuracy of `n_correct` of `n` held-out predictions, and the
    one-sided binomial p-value of doing that well by guessing at `chance`. Cross-validated
    predictions are not quite independent (the folds share training networks), so both are a
    close approximation, the usual one."""
    # the interval is two-sided whatever the test's alternative: one-sided, it would end at 100%
    interval = binomtest(n_correct, n).proportion_ci(0.95, method="wilson")
    p_value = binomtest(n_correct, n, chance, alternative="greater").pvalue
    return {"ci_low": float(interval.low), "ci_high": float(interval.high),
            "p_value": float(p_value)}


def long_results(question: str, frames: Iterable[tuple[str, str, pd.DataFrame]]) -> pd.DataFrame:
    """One question's suite results, each frame tagged (subject, features), stacked in the report's
    column order."""
    results = pd.concat(
        [f.assign(question=question, subject=subject, features=name) for subject, name, f in frames],
        ignore_index=True,
    )
    return results[["question", "subject", "features", *RESULT_COLUMNS]]


def status_results(classifiers: Sequence[str], status: str, **counts: object) -> pd.DataFrame:
    """Result rows (columns `RESULT_COLUMNS`) for classifiers that were not run, saying why."""
    rows = [{**counts, "classifier": name, "status": status} for name in classifiers]
    return pd.DataFrame(rows).reindex(columns=list(RESULT_COLUMNS))


def make_classifier(name: str, random_state: int = 0) -> Pipeline:
    """`StandardScaler -> <name>` with its randomness fixed by `random_state`."""
    if name == "SVM":
        model = SVC(random_state=random_state)
    elif name == "DecisionTree":
        model = DecisionTreeClassifier(random_state=random_state)
    elif name == "RandomForest":
        model = RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=random_state)
    elif name == "MLP":
        model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=random_state)
    elif name == "AdaBoost":
        # Stumps that look at sqrt(n_features) features each: a full stump scan of 4,364 weights
        # costs ~0.7 s per boosting round at N = 1,000, which made AdaBoost alone take most of the
        # report; 100 such rounds came within 4 points of 50 full ones on a planted signal, in a
        # thirteenth of the time.
        stump = DecisionTreeClassifier(max_depth=1, max_features="sqrt", random_state=random_state)
        model = AdaBoostClassifier(stump, n_estimators=100, random_state=random_state)
    elif name == "NaiveBayes":
        model = GaussianNB()
    else:
        raise ConfigError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIER_NAMES)}")
    return Pipeline([("scale", StandardScaler()), (name, model)])


@contextmanager
def fitting() -> Iterator[None]:
    """Where classifiers are fitted: on one BLAS thread, without the MLP's convergence warnings.

    One thread, like n_jobs=1 everywhere: on a loaded machine OpenBLAS threads spin-wait for each
    other, which made the MLP's many small products ~8x slower; on an idle one it costs at most
    the MLP a factor of the core count. The MLP's iteration cap is a deliberate time budget; its
    accuracy is what we report, and a warning per fit would break the progress display.
    """
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        yield


class ClassifierSuite:
    """Evaluate several classifiers on one labelled feature matrix with the module's protocol.

    Fitted attributes: `results_` (one row per classifier, columns `RESULT_COLUMNS`; a class smaller
    than `min_per_class` gives rows with that status and no numbers), `val_labels_` (true labels of
    the validation fold), `val_predictions_` (classifier -> its predictions there) and
    `predictions_` (classifier -> every network's prediction by the fold that held it out, `[n]`).
    """

    def __init__(self, classifiers: Sequence[str] = CLASSIFIER_NAMES, *, n_folds: int = 5,
                 min_per_class: int = MIN_PER_CLASS, random_state: int = 0) -> None:
        self.classifiers = classifiers
        self.n_folds = n_folds
        self.min_per_class = min_per_class
        self.random_state = random_state

    def run(self, X: np.ndarray, y: np.ndarray, *,
            on_fit: Callable[[str], None] | None = None) -> Self:
        """Evaluate on `X` `[n, n_features]` with labels `y` `[n]`; `on_fit(name)` is called before
        each classifier's folds (for a progress display)."""
        check_name_lists(classifiers=self.classifiers)
        if self.n_folds < 2:
            raise ConfigError(f"n_folds must be at least 2 (a fold to fit, one to test), got {self.n_folds}")
        X, y = np.asarray(X), np.asarray(y)  # a pandas Series of strings has no numpy dtype
        if len(X) != len(y):
            raise ConfigError(f"X has {len(X)} rows and y {len(y)} labels")
        templates = {name: make_classifier(name, self.random_state) for name in self.classifiers}
        labels, counts = np.unique(y, return_counts=True)
        smallest = int(counts.min()) if len(counts) else 0
        base = {"n_classes": len(labels), "n_networks": len(y), "n_per_class": smallest,
                "chance": float(counts.max() / len(y)) if len(y) else float("nan")}
        self.val_predictions_: dict[str, np.ndarray] = {}
        self.predictions_: dict[str, np.ndarray] = {}
        self.val_labels_ = np.asarray([], dtype=y.dtype)
        if len(labels) < 2 or smallest < max(self.min_per_class, 2):
            status = (f"needs two classes, the data holds {len(labels)}" if len(labels) < 2
                      else too_few_status(smallest))
            self.results_ = status_results(self.classifiers, status, **base)
            return self
        n_folds = min(self.n_folds, smallest)
        folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=self.random_state)
                     .split(X, y))
        self.val_labels_ = y[folds[0][1]]
        rows = []
        for name, template in templates.items():
            if on_fit is not None:
                on_fit(name)
            scores = self._cross_validate(name, template, X, y, folds)
            n_correct = int(np.sum(self.predictions_[name] == y))
            rows.append({**base, "classifier": name, "n_folds": n_folds,
                         "val_accuracy": scores[0], "cv_mean": float(np.mean(scores)),
                         "cv_std": float(np.std(scores)),
                         **held_out_interval(n_correct, len(y), base["chance"]), "status": OK})
        self.results_ = pd.DataFrame(rows).reindex(columns=list(RESULT_COLUMNS))
        return self

    def _cross_validate(self, name: str, template: Pipeline, X: np.ndarray, y: np.ndarray,
                        folds: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
        """Per-fold accuracies. One fit per fold gives every network its held-out prediction
        (`predictions_`), from which each fold's accuracy is read: the same numbers as
        `cross_validate`'s, without fitting twice."""
        with fitting():
            predicted = cross_val_predict(template, X, y, cv=folds)
        self.predictions_[name] = predicted
        self.val_predictions_[name] = predicted[folds[0][1]]
        return [float(np.mean(predicted[test] == y[test])) for _, test in folds]
