"""Report part for sweeps: predict a network's hyperparameters, and its accuracy, from its weights.

Model zoos that vary hyperparameters on purpose (Unterthiner et al.'s CNN zoo) found weight
statistics predict a network's test accuracy closely. Here, for every setting that varies between
the networks (lr, batch size, weight decay, width, depth, activation, initialisation), a classifier
predicts the setting's value from the weights (each value a class; chance is the commonest value's
share), and a ridge regression predicts the final validation accuracy (R²), each on the weight
statistics and on the raw weights, cross-validated. Learning curves show the score against the
number of networks the predictor is trained on.

A sweep of width or depth gives networks of several weight layouts. Their weight statistics are
the ones every layout shares (`layout_statistics`), over all networks; raw weights exist only
within a layout, so there each layout's networks are a question of their own (the settings that
vary among them, and their accuracy), and a layout with too few networks says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Self

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, learning_curve
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlc.analysis._data import MergedData
from mlc.analysis._features import RAW_WEIGHTS, WEIGHT_STATISTICS, check_features
from mlc.analysis._section import ReportTable, Section, Step, quiet

__all__ = ["SWEPT_SETTINGS", "SweepPrediction"]

SWEPT_SETTINGS = ("lr", "batch_size", "weight_decay", "width", "depth", "activation", "init")
ACCURACY = "final_val_accuracy"
_COLUMNS = ("target", "features", "kind", "n_networks", "n_train", "score", "score_std", "chance", "status")
_DEFAULTS = {"weight_decay": 0.0}  # a network that names no weight decay trained without it


class SweepPrediction:
    """Fitted: `results_` (one row per target, feature set and training size: `score` is accuracy for
    a setting, R² for the accuracy; the largest size is the cross-validated headline),
    `varying_` (the settings that vary), `section_`."""

    def __init__(self, feature_sets: Sequence[str] = (WEIGHT_STATISTICS, RAW_WEIGHTS), *,
                 n_folds: int = 5, n_sizes: int = 4, min_networks: int = 10, random_state: int = 0) -> None:
        self.feature_sets = feature_sets
        self.n_folds = n_folds
        self.n_sizes = n_sizes
        self.min_networks = min_networks
        self.random_state = random_state

    def run(self, data: MergedData, features: Mapping[str, np.ndarray], *, step: Step = quiet) -> Self:
        per_layout = RAW_WEIGHTS in self.feature_sets and len(data.layouts) > 1
        shared = [name for name in self.feature_sets if not (per_layout and name == RAW_WEIGHTS)]
        check_features(data, features, shared)
        nets = data.networks
        self.varying_ = _varying(nets)
        self.n_layouts_ = len(data.layouts)
        rows: list[dict[str, object]] = []
        for name in shared:
            rows += self._targets(nets, name, features[name], self.varying_, step)
        if per_layout:  # raw weights only compare within a layout
            ids = nets["layout_id"].to_numpy()
            for layout_id, block in data.blocks.items():
                mine = nets[ids == layout_id]
                rows += self._targets(mine, f"{RAW_WEIGHTS} ({layout_id})", block, _varying(mine), step)
        self.results_ = pd.DataFrame(rows, columns=list(_COLUMNS))
        self.section_ = self._section()
        return self

    def _targets(self, nets: pd.DataFrame, name: str, X: np.ndarray, varying: list[str],
                 step: Step) -> list[dict[str, object]]:
        """Rows for each setting in `varying` and the accuracy, predicted from the features `X`
        (rows as `nets`); none where nothing varies."""
        rows: list[dict[str, object]] = []
        for target in [*varying, ACCURACY] if varying else []:
            step(f"sweeps: {target} from {name}")
            y = nets[ACCURACY].to_numpy(float) if target == ACCURACY else _values(nets, target).to_numpy()
            rows += self._curve(target, name, X, y)
        return rows

    def _curve(self, target: str, name: str, X: np.ndarray, y: np.ndarray) -> list[dict[str, object]]:
        regression = target == ACCURACY
        base = {"target": target, "features": name, "kind": "R²" if regression else "accuracy",
                "n_networks": len(y)}
        if not regression:
            _, counts = np.unique(y, return_counts=True)
            base["chance"] = counts.max() / len(y)
            folds = min(self.n_folds, int(counts.min()))
        else:
            base["chance"] = 0.0
            folds = self.n_folds
        if len(y) < self.min_networks or folds < 2:
            return [{**base, "status": f"too few networks ({len(y)}, or under 2 of a value)"}]
        cv = (KFold(folds, shuffle=True, random_state=self.random_state) if regression
              else StratifiedKFold(folds, shuffle=True, random_state=self.random_state))
        sizes = np.unique(np.linspace(0.2, 1.0, self.n_sizes))
        n_train, _, scores = learning_curve(
            _estimator(regression, self.random_state), X, y, train_sizes=sizes, cv=cv,
            scoring="r2" if regression else "accuracy", shuffle=True, random_state=self.random_state)
        return [{**base, "n_train": int(n), "score": float(s.mean()), "score_std": float(s.std()),
                 "status": "ok"} for n, s in zip(n_train, scores, strict=True)]

    def _section(self) -> Section:
        if not self.varying_:
            return Section("Hyperparameters from weights",
                           ("No setting varies between these networks: nothing to predict.",))
        headline = (self.results_[self.results_["status"] == "ok"]
                    .sort_values("n_train").groupby(["target", "features"], sort=False).tail(1))
        table = headline.pivot(index="target", columns="features", values="score").reset_index()
        paragraphs = (
            f"Settings that vary: {', '.join(self.varying_)}. For each, a logistic regression "
            "predicts its value from the weights (score: accuracy; chance: the commonest value's "
            f"share); a ridge regression predicts `{ACCURACY}` (score: R²). {self.n_folds}-fold "
            "cross-validated, on standardised weight statistics and raw weights.",
            *([] if self.n_layouts_ == 1 else [
                f"The networks come in {self.n_layouts_} weight layouts (width or depth was swept). "
                "The weight statistics here are those every layout shares (root mean square, mean, "
                "std and mean |w| of all weights, of the matrices, of the vectors, of the first and "
                "the last matrix, and those two matrices' largest singular value), over all "
                "networks. Raw weights only compare within one layout, so each layout is its own "
                "row set, `raw weights (<layout>)`, predicting what varies among its networks; "
                "a layout with too few networks for cross-validation says so in the learning-curve "
                "table."]),
            "The learning-curve table gives the score against the number of training networks.",
        )
        return Section("Hyperparameters from weights", paragraphs, (
            ReportTable("sweep_prediction", table, "Cross-validated score with all networks"),
            ReportTable("sweep_learning_curves", self.results_, "Score against training networks",
                        inline=False),
        ))


def _varying(nets: pd.DataFrame) -> list[str]:
    """The swept settings that take more than one value among `nets`."""
    return [s for s in SWEPT_SETTINGS if s in nets and _values(nets, s).nunique() > 1]


def _values(nets: pd.DataFrame, setting: str) -> pd.Series:
    """A setting's values as class labels (strings), a missing one as its default."""
    column = nets[setting]
    if setting in _DEFAULTS:
        column = column.fillna(_DEFAULTS[setting])
    return column.astype(str)


def _estimator(regression: bool, random_state: int) -> Pipeline:
    model = Ridge(alpha=1.0) if regression else LogisticRegression(max_iter=2000, random_state=random_state)
    return Pipeline([("scale", StandardScaler()), ("model", model)])
