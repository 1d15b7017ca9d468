"""Report part 1: trojan detection, the seed's Table 2 — can a classifier tell a DS1 network from its
DS2 twin by the weights alone?

Per machine, N networks of each twin (N = the smaller twin's count, capped at `max_per_class`, so
chance is 50%) are classified by every classifier on every feature set. The Table 2 layout shows the
raw-weight validation accuracies with the original's numbers beside ours; the other feature sets feed
the baselines part. Our machines and trojan are a reconstruction (spec §9): the numbers need not match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Self

import numpy as np
import pandas as pd

from mlc.analysis._data import MergedData
from mlc.analysis._features import FEATURE_SETS, RAW_WEIGHTS, check_features
from mlc.analysis._sampling import sample_per_class
from mlc.analysis._section import (
    ReportTable,
    Section,
    Step,
    mean_std_cell,
    percent_cell,
    quiet,
)
from mlc.analysis._suite import (
    CLASSIFIER_NAMES,
    MIN_PER_CLASS,
    ClassifierSuite,
    check_name_lists,
    long_results,
    status_results,
)
from mlc.analysis._tables import per_subject, shown_status
from mlc.analysis._twins import clean_task, machines_in, trojan_task

__all__ = ["MLDS_TABLE2", "QUESTION", "TrojanDetection"]

QUESTION = "trojan detection"

# The original's validation accuracies (spec §9), machine -> classifier -> accuracy.
MLDS_TABLE2: dict[str, dict[str, float]] = {
    machine: dict(zip(CLASSIFIER_NAMES, accuracies, strict=True))
    for machine, accuracies in {
        "EightBit": (0.87, 0.78, 0.96, 0.91, 0.94, 0.99),
        "SingleDirect": (0.96, 0.81, 0.95, 0.96, 0.99, 1.00),
        "SingleInvert": (0.52, 0.49, 0.52, 0.53, 0.48, 0.55),
        "SimpleXOR": (0.86, 0.85, 0.91, 0.85, 0.94, 0.99),
        "Parity": (0.63, 0.55, 0.71, 0.66, 0.69, 0.61),
    }.items()
}


class TrojanDetection:
    """DS1 vs DS2 per machine. Fitted: `results_` (long: question, subject, features and the suite's
    columns), `table_` (Table 2 layout, ours beside MLDS), `cv_table_` (cross-validated mean and
    std), `section_`."""

    def __init__(self, classifiers: Sequence[str] = CLASSIFIER_NAMES,
                 feature_sets: Sequence[str] = FEATURE_SETS, *, max_per_class: int = 1000,
                 min_per_class: int = MIN_PER_CLASS, n_folds: int = 5,
                 random_state: int = 0) -> None:
        self.classifiers = classifiers
        self.feature_sets = feature_sets
        self.max_per_class = max_per_class
        self.min_per_class = min_per_class
        self.n_folds = n_folds
        self.random_state = random_state

    def run(self, data: MergedData, features: Mapping[str, np.ndarray], *,
            step: Step = quiet) -> Self:
        check_name_lists(classifiers=self.classifiers, feature_sets=self.feature_sets)
        check_features(data, features, self.feature_sets)
        tasks = data.networks["task"].to_numpy()
        self.results_ = long_results(QUESTION, [
            (machine, name, frame)
            for machine in machines_in(data.tasks)
            for name, frame in self._machine(machine, tasks, features, step).items()
        ])
        raw = self.results_[self.results_["features"] == RAW_WEIGHTS]
        self.table_ = _table2(raw, self.classifiers)
        self.cv_table_ = per_subject(raw, "machine", {" cv_mean": "cv_mean", " cv_std": "cv_std"},
                                     self.classifiers)
        self.section_ = self._section()
        return self

    def _machine(self, machine: str, tasks: np.ndarray, features: Mapping[str, np.ndarray],
                 step: Step) -> dict[str, pd.DataFrame]:
        """Feature set -> result rows for one machine (status rows when a twin is absent)."""
        clean, trojan = clean_task(machine), trojan_task(machine)
        missing = [t for t in (clean, trojan) if not np.any(tasks == t)]
        if missing:
            status = f"no {' or '.join(missing)} networks in the data"
            return {name: status_results(self.classifiers, status) for name in self.feature_sets}
        candidates = np.flatnonzero(np.isin(tasks, (clean, trojan)))
        rng = np.random.default_rng(self.random_state)
        chosen = candidates[sample_per_class(tasks[candidates], self.max_per_class, rng,
                                             balanced=True)]
        y = np.where(tasks[chosen] == clean, "DS1", "DS2")
        suite = ClassifierSuite(self.classifiers, n_folds=self.n_folds,
                                min_per_class=self.min_per_class, random_state=self.random_state)
        out = {}
        for name in self.feature_sets:
            def on_fit(classifier: str, name: str = name) -> None:
                step(f"{QUESTION}: {machine}, {name}, {classifier}")
            out[name] = suite.run(features[name][chosen], y, on_fit=on_fit).results_
        return out

    def _section(self) -> Section:
        clfs = list(self.classifiers)
        shown = self.table_[["machine", "n_per_class", "n_folds"]].assign(
            status=shown_status(self.table_))
        for c in clfs:  # "58% (87%)": ours, then MLDS's, in one column as on the console
            shown[c] = [f"{percent_cell(ours)} ({percent_cell(theirs)})" for ours, theirs in
                        zip(self.table_[c], self.table_[f"{c} (MLDS)"], strict=True)]
        cv_shown = self.cv_table_[["machine", "n_per_class", "n_folds", "status"]].copy()
        cv_shown["status"] = shown_status(self.cv_table_)
        for c in clfs:
            cv_shown[c] = [mean_std_cell(m, s) for m, s in
                           zip(self.cv_table_[f"{c} cv_mean"], self.cv_table_[f"{c} cv_std"],
                               strict=True)]
        return Section(
            "1. Trojan detection (Table 2)",
            (f"For each machine, a classifier sees the flattened weights of DS1 (clean) and DS2 "
             f"(trojaned) networks and must say which is which; chance is 50%. Both twins "
             f"contribute the same number N of networks (the smaller twin's count, at most "
             f"{self.max_per_class:,}), drawn at random; {self.n_folds}-fold stratified "
             f"cross-validation, the first fold's held-out part being the validation accuracy "
             f"(with 5 folds, the original's 800/200 split). "
             f"Features are standardised; random_state={self.random_state}.",
             "MLDS columns are the original's numbers (spec §9). Our machines and trojan are a "
             "reconstruction, so they need not match; a row whose twins are missing or too small "
             "says so in its status. An evaluated row's status says whether its best classifier "
             f"beats chance (one-sided binomial test on all {self.n_folds} folds' held-out "
             "predictions, p < 0.05 after multiplying by the number of classifiers); one that "
             "does not is noise, whatever its numbers look like."),
            tables=(
                ReportTable("trojan_detection", self.table_,
                            "Validation accuracy on raw weights: ours (MLDS's in brackets).",
                            shown),
                ReportTable("trojan_detection_cv", self.cv_table_,
                            "Cross-validated accuracy on raw weights (mean ± std over folds).",
                            cv_shown),
            ))


def _table2(raw: pd.DataFrame, classifiers: Sequence[str]) -> pd.DataFrame:
    """One row per machine: N, folds, status, then per classifier ours and MLDS's validation
    accuracy side by side."""
    table = per_subject(raw, "machine", {"": "val_accuracy"}, classifiers)
    for c in classifiers:
        mlds = [MLDS_TABLE2.get(str(m), {}).get(c, np.nan) for m in table["machine"]]
        table.insert(table.columns.get_loc(c) + 1, f"{c} (MLDS)", mlds)
    return table
