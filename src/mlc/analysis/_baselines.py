"""Report part 6: baselines that keep the analysis honest.

Parts 1 and 2 evaluate every classifier on three feature sets: raw weights, permutation-invariant
weight statistics and final losses alone. This part puts the best of each side by side per question,
with a plain verdict, so a reader sees whether the weights say more than the loss does. Fold-to-fold
spread is the noise floor of these numbers: a side beats chance by more than twice its own
cross-validation std, and the two sides differ by more than twice the larger one (at least 1 point).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
import pandas as pd

from mlc.analysis._features import FEATURE_SETS, FINAL_LOSSES, RAW_WEIGHTS
from mlc.analysis._section import ReportTable, Section, percent_cell
from mlc.analysis._suite import OK

__all__ = ["Baselines"]

_MIN_NOISE = 0.01


class Baselines:
    """Fitted: `results_` (every result row given), `summary_` (per question and subject: chance,
    the best cross-validated accuracy per feature set with its classifier, a verdict),
    `section_`."""

    def __init__(self, feature_sets: Sequence[str] = FEATURE_SETS) -> None:
        self.feature_sets = feature_sets

    def run(self, results: Sequence[pd.DataFrame]) -> Self:
        self.results_ = pd.concat(results, ignore_index=True)
        rows = [self._summarise(question, subject, group) for (question, subject), group
                in self.results_.groupby(["question", "subject"], sort=False)]
        self.summary_ = pd.DataFrame(rows)
        self.section_ = self._section()
        return self

    def _summarise(self, question: str, subject: str, group: pd.DataFrame) -> dict[str, object]:
        done = group[group["status"] == OK]
        row: dict[str, object] = {"question": question, "subject": subject,
                                  "n_per_class": group["n_per_class"].max(),
                                  "chance": done["chance"].max() if len(done) else np.nan}
        best: dict[str, pd.Series] = {}
        for name in self.feature_sets:
            mine = done[done["features"] == name]
            top = mine.loc[mine["cv_mean"].idxmax()] if len(mine) else None
            row[name] = np.nan if top is None else top["cv_mean"]
            row[f"{name} classifier"] = None if top is None else top["classifier"]
            if top is not None:
                best[name] = top
        row["verdict"] = _verdict(best, row["chance"]) if best else str(group["status"].iloc[0])
        return row

    def _section(self) -> Section:
        summary = self.summary_
        shown = summary[["question", "subject", "n_per_class"]].copy()
        shown["chance"] = summary["chance"].map(percent_cell)
        for name in self.feature_sets:
            shown[name] = [percent_cell(v) + (f" ({c})" if isinstance(c, str) else "")
                           for v, c in zip(summary[name], summary[f"{name} classifier"],
                                           strict=True)]
        shown["verdict"] = summary["verdict"]
        return Section(
            "6. Baselines: do the weights say more than the loss?",
            ("For each question, the best cross-validated accuracy (and the classifier that "
             "reached it) on three feature sets: the raw weights; permutation-invariant weight "
             "statistics (per-tensor norms, moments and sorted singular values, unchanged when "
             "hidden units are reordered); and the final training and validation losses alone. "
             "If the losses do as well as the weights, the classifier may be reading how well a "
             "network trained rather than what it computes.",
             *([] if RAW_WEIGHTS in self.feature_sets else [
                 "Here the networks come in several weight layouts, so there are no raw weights to "
                 "compare, and the weight statistics are those every layout shares (see the sweep "
                 "part)."]),
             "A side beats chance when it is more than twice its own fold-to-fold std above it; "
             "the two sides differ when they are more than twice the larger std apart (at least "
             "1 point either way)."),
            tables=(
                ReportTable("baselines_summary", self.summary_,
                            "Best cross-validated accuracy per feature set.", shown),
                ReportTable("baselines", self.results_,
                            "Every classifier on every feature set (parts 1 and 2).",
                            inline=False),
            ))


def _verdict(best: dict[str, pd.Series], chance: float) -> str:
    """Plain words for how the best weight-based accuracy compares with the loss-only one. Each side
    beats chance by its own noise; the two differ by the larger one's (a noisy loss classifier must
    not hide a clear weight result, nor the reverse)."""
    weights = [row for name, row in best.items() if name != FINAL_LOSSES]
    loss = best.get(FINAL_LOSSES)
    if not weights or loss is None:
        return "not all feature sets were evaluated"
    top = max(weights, key=lambda row: row["cv_mean"])
    weights_beat = top["cv_mean"] - chance > _noise(top)
    loss_beat = loss["cv_mean"] - chance > _noise(loss)
    noise = max(_noise(top), _noise(loss))
    if not weights_beat and not loss_beat:
        return "neither the weights nor the loss beat chance"
    if top["cv_mean"] - loss["cv_mean"] > noise:
        return "the weights say more than the loss"
    if loss["cv_mean"] - top["cv_mean"] > noise:
        return "the loss says more than the weights"
    if weights_beat and loss_beat:
        return "the loss alone does as well as the weights"
    if weights_beat:
        return "the weights beat chance and the loss does not, but the two are within the noise"
    return "the loss beats chance and the weights do not, but the two are within the noise"


def _noise(row: pd.Series) -> float:
    """Twice the fold-to-fold std, at least one point: the noise floor of a cross-validated mean."""
    return max(2 * float(row["cv_std"]), _MIN_NOISE)
