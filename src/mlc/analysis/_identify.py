"""Report part 2: which task trained this network? Multi-class identification over the tasks present.

Two groups of tasks where the data holds both: the DS1 machines alone (five different automata, the
report's headline question) and every task (which adds each machine's trojaned twin, a much finer
distinction). Each task contributes up to `max_per_class` networks (classes may differ in size, so
chance is the largest class's share). Tasks with fewer than `min_per_class` networks are kept out of
the classifier and listed as too few. Each group's confusion matrix is that of its best raw-weight
classifier (by cross-validated mean), counted over every network's held-out prediction; it shows
which tasks are mistaken for which.

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
from mlc.analysis._plots import confusion_figure
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
from mlc.analysis._twins import clean_task, machine_of

__all__ = ["ALL_TASKS", "DS1_MACHINES", "IDENTIFY_CLASSIFIERS", "QUESTION", "TaskIdentification",
           "identification_groups"]

QUESTION = "task identification"
ALL_TASKS = "all tasks"
DS1_MACHINES = "DS1 machines"
IDENTIFY_CLASSIFIERS = ("RandomForest", "MLP", "NaiveBayes")


def identification_groups(tasks: Sequence[str]) -> dict[str, list[str]]:
    """Group name -> its tasks: the DS1 machines (clean `<Machine>Machine` tasks) when there are two
    or more and the data holds other tasks too, then all tasks."""
    ds1 = [t for t in sorted(tasks) if (m := machine_of(t)) is not None and t == clean_task(m)]
    groups = {DS1_MACHINES: ds1} if 2 <= len(ds1) < len(set(tasks)) else {}
    return {**groups, ALL_TASKS: sorted(set(tasks))}


class TaskIdentification:
    """Fitted: `results_` (long: one subject per group, per feature set and classifier),
    `per_task_` (count, status and recall per task among all tasks), `confusions_` (group -> true x
    predicted counts, for the groups that could be classified), `best_classifiers_` (group -> the
    classifier of its confusion matrix), `section_`."""

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
        self.confusions_: dict[str, pd.DataFrame] = {}
        self.best_classifiers_: dict[str, str] = {}
        frames = []
        for group, members in identification_groups(list(counts)).items():
            eligible = [t for t in members if counts[t] >= self.min_per_class]
            if len(eligible) < 2:
                status = (f"needs at least two tasks with {self.min_per_class} networks or more; "
                          f"the data has {len(eligible)}")
                by_set = {name: status_results(self.classifiers, status) for name in self.feature_sets}
            else:
                by_set = self._classify(group, tasks, eligible, features, step)
            frames += [(group, name, frame) for name, frame in by_set.items()]
        self.results_ = long_results(QUESTION, frames)
        self.per_task_ = self._per_task(counts)
        self.section_ = self._section()
        return self

    def _classify(self, group: str, tasks: np.ndarray, eligible: list[str],
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
                step(f"{QUESTION} ({group}): {name}, {classifier}")
            out[name] = suite.run(features[name][chosen], y, on_fit=on_fit).results_
            if name == RAW_WEIGHTS:
                self._confusion(group, suite, y, out[name], eligible)
        return out

    def _confusion(self, group: str, suite: ClassifierSuite, y: np.ndarray,
                   results: pd.DataFrame, labels: list[str]) -> None:
        done = results[results["status"] == OK]
        if done.empty:
            return
        best = str(done.loc[done["cv_mean"].idxmax(), "classifier"])
        matrix = confusion_matrix(y, suite.predictions_[best], labels=labels)
        self.best_classifiers_[group] = best
        self.confusions_[group] = pd.DataFrame(
            matrix, index=pd.Index(labels, name="true task"), columns=labels)

    def _per_task(self, counts: dict[str, int]) -> pd.DataFrame:
        confusion = self.confusions_.get(ALL_TASKS)
        rows = []
        for task, n in counts.items():
            recall = np.nan
            if confusion is not None and task in confusion.index:
                row = confusion.loc[task]
                recall = row[task] / max(int(row.sum()), 1)
            status = OK if n >= self.min_per_class else too_few_status(n)
            rows.append({"task": task, "n_networks": n, "status": status, "recall": recall})
        return pd.DataFrame(rows, columns=["task", "n_networks", "status", "recall"])

    def _section(self) -> Section:
        shown = percents(self.results_.drop(columns=["question"]),
                         ["val_accuracy", "cv_mean", "cv_std", "ci_low", "ci_high", "chance"])
        shown["p_value"] = self.results_["p_value"].map(lambda p: "—" if pd.isna(p) else f"{p:.2g}")
        paragraphs = [
            "Multi-class identification over every task with enough networks"
            + (", and over the DS1 machines alone (five different automata; the headline)"
               if DS1_MACHINES in set(self.results_["subject"]) else "")
            + f". Each task contributes up to {self.max_per_class:,} networks drawn at random; "
            "chance is the largest task's share. Same protocol as part 1 (stratified folds, the "
            "first as the validation split); ci_low and ci_high bound the accuracy of all held-out "
            "predictions (95%), and p_value is the chance of doing that well by guessing. A task "
            "with too few networks is listed, not dropped."]
        missing = [g for g in identification_groups(list(self.per_task_["task"]))
                   if g not in self.confusions_]
        if missing:
            paragraphs.append(f"No confusion matrix for {', '.join(missing)}: too few tasks with "
                              f"enough networks (see the status column).")
        tables = [ReportTable("task_identification", self.results_,
                              "Accuracy per group of tasks, feature set and classifier.", shown),
                  ReportTable("task_identification_per_task", self.per_task_,
                              "Networks per task and the best raw-weight classifier's recall on "
                              "each (all tasks, held-out predictions).",
                              percents(self.per_task_, ["recall"]))]
        figures = []
        for group, confusion in self.confusions_.items():
            name = "task_confusion" + ("" if group == ALL_TASKS else "_ds1")
            caption = (f"Confusion matrix ({group}) of {self.best_classifiers_[group]}, the best "
                       "raw-weight classifier, over every network's held-out prediction: rows "
                       "true task, columns predicted.")
            tables.append(ReportTable(name, confusion.reset_index(), caption))
            figures.append(ReportFigure(name, confusion_figure(
                confusion, f"{group}: {self.best_classifiers_[group]} on raw weights"), caption))
        return Section("2. Which task trained this network?", tuple(paragraphs),
                       tables=tuple(tables), figures=tuple(figures))
