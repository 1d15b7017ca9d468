"""Report part 2: which task trained this network? Multi-class identification over every task present.

Each task contributes up to `max_per_class` networks (classes may differ in size, so chance is the
largest class's share). Tasks with fewer than `min_per_class` networks are kept out of the classifier
and listed as too few. The confusion matrix is that of the best raw-weight classifier (by
cross-validated mean) on the validation fold; it shows which tasks are mistaken for which — for MLDS,
typically a machine for its trojaned twin.

SVM, DecisionTree and AdaBoost are not in the default set: on 10 tasks x 1,000 networks of 4,364
weights one SVM fit took ~4 minutes and one tree ~45 s on two cores, five folds each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Self

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from mlc.analysis._data import MergedData
from mlc.analysis._features import FEATURE_SETS, RAW_WEIGHTS, check_features
from mlc.analysis._plots import confusion_figure, message_figure
from mlc.analysis._sampling import class_counts, sample_per_class
from mlc.analysis._section import ReportFigure, ReportTable, Section, Step, percents, quiet
from mlc.analysis._suite import (
    MIN_PER_CLASS,
    OK,
    ClassifierSuite,
    check_name_lists,
    long_results,
    status_results,
    too_few_status,
)

__all__ = ["IDENTIFY_CLASSIFIERS", "QUESTION", "TaskIdentification"]

QUESTION = "task identification"
SUBJECT = "all tasks"
IDENTIFY_CLASSIFIERS = ("RandomForest", "MLP", "NaiveBayes")


class TaskIdentification:
    """Fitted: `results_` (long, per feature set and classifier), `per_task_` (count, status and
    recall per task), `confusion_` (true x predicted counts, or None), `best_classifier_`,
    `section_`."""

    def __init__(self, classifiers: Sequence[str] = IDENTIFY_CLASSIFIERS,
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
        counts = class_counts(tasks)
        eligible = [t for t, n in counts.items() if n >= self.min_per_class]
        self.confusion_: pd.DataFrame | None = None
        self.best_classifier_: str | None = None
        if len(eligible) < 2:
            status = (f"needs at least two tasks with {self.min_per_class} networks or more; "
                      f"the data has {len(eligible)}")
            frames = {name: status_results(self.classifiers, status) for name in self.feature_sets}
        else:
            frames = self._classify(tasks, eligible, features, step)
        self.results_ = long_results(QUESTION, [(SUBJECT, name, f) for name, f in frames.items()])
        self.per_task_ = self._per_task(counts)
        self.section_ = self._section()
        return self

    def _classify(self, tasks: np.ndarray, eligible: list[str],
                  features: Mapping[str, np.ndarray], step: Step) -> dict[str, pd.DataFrame]:
        rng = np.random.default_rng(self.random_state)
        candidates = np.flatnonzero(np.isin(tasks, eligible))
        chosen = candidates[sample_per_class(tasks[candidates], self.max_per_class, rng,
                                             balanced=False)]
        y = tasks[chosen]
        suite = ClassifierSuite(self.classifiers, n_folds=self.n_folds,
                                min_per_class=self.min_per_class, random_state=self.random_state)
        out = {}
        for name in self.feature_sets:
            def on_fit(classifier: str, name: str = name) -> None:
                step(f"{QUESTION}: {name}, {classifier}")
            out[name] = suite.run(features[name][chosen], y, on_fit=on_fit).results_
            if name == RAW_WEIGHTS:
                self._confusion(suite, out[name], eligible)
        return out

    def _confusion(self, suite: ClassifierSuite, results: pd.DataFrame,
                   labels: list[str]) -> None:
        done = results[results["status"] == OK]
        if done.empty:
            return
        best = str(done.loc[done["cv_mean"].idxmax(), "classifier"])
        matrix = confusion_matrix(suite.val_labels_, suite.val_predictions_[best], labels=labels)
        self.best_classifier_ = best
        self.confusion_ = pd.DataFrame(matrix, index=pd.Index(labels, name="true task"),
                                       columns=labels)

    def _per_task(self, counts: dict[str, int]) -> pd.DataFrame:
        rows = []
        for task, n in counts.items():
            recall = np.nan
            if self.confusion_ is not None and task in self.confusion_.index:
                row = self.confusion_.loc[task]
                recall = row[task] / max(int(row.sum()), 1)
            status = OK if n >= self.min_per_class else too_few_status(n)
            rows.append({"task": task, "n_networks": n, "status": status,
                         "validation_recall": recall})
        return pd.DataFrame(rows, columns=["task", "n_networks", "status", "validation_recall"])

    def _section(self) -> Section:
        shown = percents(self.results_.drop(columns=["question", "subject"]),
                         ["val_accuracy", "cv_mean", "cv_std", "chance"])
        if self.confusion_ is None:
            figure = message_figure("No confusion matrix: too few tasks with enough networks.")
            confusion = pd.DataFrame()
            caption = "No confusion matrix (see the status column above)."
        else:
            figure = confusion_figure(self.confusion_,
                                      f"{self.best_classifier_} on raw weights, validation fold")
            confusion = self.confusion_.reset_index()
            caption = (f"Confusion matrix of {self.best_classifier_} (the best raw-weight "
                       f"classifier) on the validation fold: rows true task, columns predicted.")
        return Section(
            "2. Which task trained this network?",
            ("Multi-class identification over every task with enough networks. Each task "
             f"contributes up to {self.max_per_class:,} networks drawn at random; chance is the "
             "largest task's share. Same protocol as part 1 (stratified folds, the first as the "
             "validation split). A task with too few networks is listed, not dropped.",),
            tables=(
                ReportTable("task_identification", self.results_,
                            "Accuracy per feature set and classifier.", shown),
                ReportTable("task_identification_per_task", self.per_task_,
                            "Networks per task and the best classifier's recall on each.",
                            percents(self.per_task_, ["validation_recall"])),
                ReportTable("task_confusion", confusion, caption),
            ),
            figures=(ReportFigure("task_confusion", figure, caption),))
