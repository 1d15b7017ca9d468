"""Report part 4: do CPU- and GPU-trained networks differ? Per task, can a classifier tell the device
kind from the raw weights?

Only a question when the data holds both kinds; when it holds one, the part says so plainly instead of
printing an empty table. Per task the kinds are drawn balanced, so chance is 1/(number of kinds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Self

import numpy as np
import pandas as pd

from mlc.analysis._data import MergedData
from mlc.analysis._features import RAW_WEIGHTS, check_features
from mlc.analysis._sampling import class_counts, sample_per_class
from mlc.analysis._section import ReportTable, Section, Step, percents, quiet
from mlc.analysis._suite import (
    MIN_PER_CLASS,
    ClassifierSuite,
    check_name_lists,
    long_results,
    status_results,
)
from mlc.analysis._tables import per_subject, shown_status

__all__ = ["DEVICE_CLASSIFIERS", "QUESTION", "DeviceComparison"]

QUESTION = "cpu vs gpu"
DEVICE_CLASSIFIERS = ("RandomForest", "MLP", "NaiveBayes")


class DeviceComparison:
    """Fitted: `kinds_` (device kinds in the data), `counts_` (networks per task and kind),
    `results_` (long), `table_` (one row per task), `section_`."""

    def __init__(self, classifiers: Sequence[str] = DEVICE_CLASSIFIERS, *,
                 max_per_class: int = 1000, min_per_class: int = MIN_PER_CLASS,
                 n_folds: int = 5, random_state: int = 0) -> None:
        self.classifiers = classifiers
        self.max_per_class = max_per_class
        self.min_per_class = min_per_class
        self.n_folds = n_folds
        self.random_state = random_state

    def run(self, data: MergedData, features: Mapping[str, np.ndarray], *,
            step: Step = quiet) -> Self:
        check_name_lists(classifiers=self.classifiers)
        check_features(data, features, (RAW_WEIGHTS,))
        nets = data.networks
        self.kinds_ = tuple(sorted(nets["device_kind"].astype(str).unique()))
        self.counts_ = (pd.crosstab(nets["task"], nets["device_kind"].astype(str))
                        .reset_index().rename_axis(columns=None))
        tasks, kinds = nets["task"].to_numpy(), nets["device_kind"].astype(str).to_numpy()
        frames = []
        for task in data.tasks:
            step(f"{QUESTION}: {task}")
            mine = np.flatnonzero(tasks == task)
            frames.append((task, RAW_WEIGHTS, self._task(features[RAW_WEIGHTS][mine], kinds[mine])))
        self.results_ = long_results(QUESTION, frames)
        self.table_ = per_subject(self.results_, "task",
                                  {"": "val_accuracy", " cv_mean": "cv_mean",
                                   " cv_std": "cv_std"}, self.classifiers)
        self.section_ = self._section(len(nets))
        return self

    def _task(self, X: np.ndarray, kinds: np.ndarray) -> pd.DataFrame:
        counts = class_counts(kinds)
        if len(counts) < 2:
            (kind, n), = counts.items()
            scope = "in the data" if len(self.kinds_) < 2 else "for this task"
            return status_results(self.classifiers, f"only {kind}-trained networks {scope} "
                                                    f"(n={n})", n_networks=n, n_classes=1)
        rng = np.random.default_rng(self.random_state)
        chosen = sample_per_class(kinds, self.max_per_class, rng, balanced=True)
        suite = ClassifierSuite(self.classifiers, n_folds=self.n_folds,
                                min_per_class=self.min_per_class, random_state=self.random_state)
        return suite.run(X[chosen], kinds[chosen]).results_

    def _section(self, n_networks: int) -> Section:
        if len(self.kinds_) < 2:
            text = (f"The data holds only {self.kinds_[0]}-trained networks ({n_networks:,}), so "
                    "it cannot say whether CPU- and GPU-trained networks differ. To ask, train "
                    "networks of the same tasks on the other device kind and analyse the datasets "
                    "together.")
        else:
            text = (f"The data holds networks trained on {', '.join(self.kinds_)}. Per task, "
                    "classifiers try to tell the device kind from the raw weights, with the kinds "
                    "drawn balanced (chance 1/number of kinds) and the same protocol as part 1. "
                    "Accuracy near chance means the device leaves no trace in the weights.")
        shown_columns = [f"{c}{s}" for c in self.classifiers for s in ("", " cv_mean", " cv_std")]
        return Section(
            "4. CPU vs GPU", (text,),
            tables=(
                ReportTable("device_counts", self.counts_, "Networks per task and device kind."),
                ReportTable("device_comparison", self.table_,
                            "Device-kind classification per task on raw weights: validation "
                            "accuracy, cross-validated mean and std per classifier.",
                            percents(self.table_, shown_columns).drop(columns="signal")
                            .assign(status=shown_status(self.table_))),
            ))
