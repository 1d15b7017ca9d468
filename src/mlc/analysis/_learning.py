"""Report part 3: how many example networks are needed? Accuracy against training networks per class.

For each question (task identification, and trojan detection per machine) the networks are drawn
balanced, a stratified 20% is held out once, and the classifier is trained on growing numbers of
networks per class drawn from the rest, `n_repeats` times per size; the spread shows how much the
answer depends on which networks were drawn. Raw weights only: the question is about the weights.

The default classifier is NaiveBayes — the original's strongest on Table 2 and cheap enough to refit
dozens of times; any suite classifier can be named instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Self

import numpy as np
import pandas as pd
from sklearn.model_selection import learning_curve, train_test_split

from mlc.analysis._data import MergedData
from mlc.analysis._features import RAW_WEIGHTS, check_features
from mlc.analysis._plots import learning_curve_figure
from mlc.analysis._sampling import class_counts, sample_per_class
from mlc.analysis._section import ReportFigure, ReportTable, Section, Step, percents, quiet
from mlc.analysis._suite import MIN_PER_CLASS, OK, fitting, make_classifier, too_few_status
from mlc.analysis._twins import clean_task, machines_in, trojan_task

__all__ = ["LearningCurve"]

CURVE_COLUMNS = ("question", "classifier", "n_train_per_class", "accuracy_mean", "accuracy_std",
                 "n_repeats", "n_test", "chance", "status")


class LearningCurve:
    """Fitted: `table_` (one row per question and training size; a question with too few networks
    has one row saying so), `section_`."""

    def __init__(self, classifier: str = "NaiveBayes",
                 sizes: Sequence[int] = (5, 10, 20, 50, 100, 200, 500, 1000), *,
                 n_repeats: int = 3, max_per_class: int = 1000,
                 min_per_class: int = MIN_PER_CLASS, random_state: int = 0) -> None:
        self.classifier = classifier
        self.sizes = sizes
        self.n_repeats = n_repeats
        self.max_per_class = max_per_class
        self.min_per_class = min_per_class
        self.random_state = random_state

    def run(self, data: MergedData, features: Mapping[str, np.ndarray], *,
            step: Step = quiet) -> Self:
        check_features(data, features, (RAW_WEIGHTS,))
        X = features[RAW_WEIGHTS]
        rows: list[dict[str, object]] = []
        for question, positions in _questions(data.networks["task"].to_numpy(),
                                              self.min_per_class):
            step(f"learning curve: {question}")
            labels = data.networks["task"].to_numpy()[positions]
            rows += self._curve(question, X[positions], labels)
        self.table_ = pd.DataFrame(rows, columns=list(CURVE_COLUMNS)).astype(
            {"n_train_per_class": "Int64", "n_repeats": "Int64", "n_test": "Int64"})
        self.section_ = self._section()
        return self

    def _curve(self, question: str, X: np.ndarray, labels: np.ndarray) -> list[dict[str, object]]:
        rng = np.random.default_rng(self.random_state)
        chosen = sample_per_class(labels, self.max_per_class, rng, balanced=True)
        X, y = X[chosen], labels[chosen]
        counts = class_counts(y)
        base = {"question": question, "classifier": self.classifier}
        if len(counts) < 2:
            return [{**base, "status": f"needs two classes with {self.min_per_class} networks "
                                       f"or more; the data has {len(counts)}"}]
        base["chance"] = 1 / len(counts)
        smallest = min(counts.values())
        if smallest < self.min_per_class:
            return [{**base, "status": too_few_status(smallest)}]
        train, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y,
                                       random_state=self.random_state)
        pool = min(class_counts(y[train]).values())
        sizes = sorted({s for s in self.sizes if s <= pool} | {pool})
        # One split per repeat, all with the same held-out part; each orders its training networks
        # so that every prefix of k * size holds `size` of each of the k classes, which makes
        # learning_curve's first-n training sets balanced draws, nested within a repeat.
        splits = [(_balanced_order(train, y[train], rng), test) for _ in range(self.n_repeats)]
        with fitting():
            _, _, scores = learning_curve(
                make_classifier(self.classifier, self.random_state), X, y,
                train_sizes=[size * len(counts) for size in sizes], cv=splits, shuffle=False)
        return [{**base, "n_train_per_class": size, "accuracy_mean": float(np.mean(row)),
                 "accuracy_std": float(np.std(row)), "n_repeats": self.n_repeats,
                 "n_test": len(test), "status": OK}
                for size, row in zip(sizes, scores, strict=True)]

    def _section(self) -> Section:
        done = self.table_[self.table_["status"] == OK]
        caption = (f"{self.classifier} on raw weights: held-out accuracy (mean ± std over "
                   f"{self.n_repeats} draws) against training networks per class; dotted lines "
                   "are chance.")
        paragraphs = ["Each question's networks are drawn balanced; 20% are held out once, and "
                      "the classifier is trained on growing numbers of networks per class from "
                      "the rest (scikit-learn's learning_curve). Where the curve flattens, more "
                      "networks no longer help."]
        figures = ()
        if done.empty:
            paragraphs.append("No figure: no question has enough networks for a curve (see the "
                              "status column).")
        else:
            chance = dict(zip(done["question"], done["chance"], strict=False))
            figures = (ReportFigure("learning_curve", learning_curve_figure(done, chance),
                                    caption),)
        return Section(
            "3. How many example networks are needed?", tuple(paragraphs),
            tables=(ReportTable("learning_curve", self.table_, caption,
                                percents(self.table_, ["accuracy_mean", "accuracy_std",
                                                       "chance"])),),
            figures=figures)


def _balanced_order(positions: np.ndarray, labels: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """`positions` reordered in rounds, each round one network of every class (classes in sorted
    order, networks within a class shuffled): the first k * m hold m of each of the k classes, as
    long as every class has m."""
    shuffled = [rng.permutation(positions[labels == label]) for label in class_counts(labels)]
    rounds = min(len(members) for members in shuffled)
    return np.stack([members[:rounds] for members in shuffled], axis=1).reshape(-1)


def _questions(tasks: np.ndarray, min_per_class: int) -> list[tuple[str, np.ndarray]]:
    """(question, positions of its networks): all tasks with enough networks, then each machine
    whose twins are both present."""
    counts = class_counts(tasks)
    eligible = [t for t, n in counts.items() if n >= min_per_class]
    questions = [("task identification", np.flatnonzero(np.isin(tasks, eligible)))]
    for machine in machines_in(counts):
        twins = (clean_task(machine), trojan_task(machine))
        if all(t in counts for t in twins):
            questions.append((f"trojan: {machine}", np.flatnonzero(np.isin(tasks, twins))))
    return questions
