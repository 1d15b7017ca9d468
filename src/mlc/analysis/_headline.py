"""The report's headline: the one question the data answers best, in a sentence with its numbers.

Which machine trained a network, from its weights alone? Asked of the DS1 machines where the data
holds them (five different automata: the question a short run can answer, since their networks part
ways within epochs while a trojan is learnt only after 60-180), else of all tasks. The answer is the
best raw-weight classifier's cross-validated accuracy with its 95% interval, the chance level, and
whether it beats chance once the choice of the best of several classifiers is paid for.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

from mlc.analysis._features import FINAL_LOSSES, RAW_WEIGHTS
from mlc.analysis._identify import ALL_TASKS, DS1_MACHINES, QUESTION, TaskIdentification
from mlc.analysis._section import ReportTable, Section, percent_cell, percents
from mlc.analysis._suite import ABOVE_CHANCE, OK, SIGNIFICANCE, signal

__all__ = ["HEADLINE_COLUMNS", "Headline"]

HEADLINE_COLUMNS = ("question", "group", "features", "classifier", "n_classes", "n_networks",
                    "accuracy", "ci_low", "ci_high", "chance", "p_value", "signal", "status")


class Headline:
    """Fitted: `table_` (one row, columns `HEADLINE_COLUMNS`), `recall_` (task -> recall of the
    headline classifier, empty when not evaluated), `text_` (the answer in words), `section_`."""

    def run(self, identification: TaskIdentification,
            baselines: pd.DataFrame | None = None) -> Self:
        """`baselines` is `Baselines.summary_`: its verdict for the headline's question says
        whether the final losses alone do as well as the weights."""
        results = identification.results_
        group = DS1_MACHINES if DS1_MACHINES in set(results["subject"]) else ALL_TASKS
        rows = results[(results["subject"] == group) & (results["features"] == RAW_WEIGHTS)]
        done = rows[rows["status"] == OK]
        question = ("Which DS1 machine trained this network?" if group == DS1_MACHINES
                    else "Which task trained this network?")
        row: dict[str, object] = {"question": question, "group": group, "features": RAW_WEIGHTS}
        self.recall_: dict[str, float] = {}
        if done.empty:
            row["status"] = (str(rows["status"].iloc[0]) if len(rows) else "not evaluated"
                             if RAW_WEIGHTS in set(results["features"])
                             else "no raw weights to read (networks of several weight layouts)")
            self.text_ = f"{question} Not evaluated: {row['status']}."
        else:
            best = done.loc[done["cv_mean"].idxmax()]
            row |= {"classifier": best["classifier"], "n_classes": best["n_classes"],
                    "n_networks": best["n_networks"], "accuracy": best["cv_mean"],
                    "ci_low": best["ci_low"], "ci_high": best["ci_high"], "chance": best["chance"],
                    "p_value": best["p_value"], "signal": signal(done["p_value"].tolist()),
                    "status": OK}
            confusion = identification.confusions_[group]
            counts = confusion.to_numpy()
            self.recall_ = dict(zip(confusion.index, np.diag(counts) / np.maximum(
                counts.sum(axis=1), 1), strict=True))
            self.text_ = (_sentence(question, best, str(row["signal"]), len(done), self.recall_)
                          + _baseline(baselines, group))
        self.table_ = pd.DataFrame([row]).reindex(columns=list(HEADLINE_COLUMNS))
        self.section_ = Section(
            "Headline", (self.text_,),
            tables=(ReportTable("headline", self.table_, "The headline's numbers.",
                                percents(self.table_, ["accuracy", "ci_low", "ci_high", "chance"])
                                .drop(columns=["question", "features", "status"])
                                .assign(p_value=self.table_["p_value"].map(_p_cell))),))
        return self


def _baseline(summary: pd.DataFrame | None, group: str) -> str:
    """The baselines' verdict on the same question, as a sentence ("" without one)."""
    if summary is None or summary.empty:
        return ""
    mine = summary[(summary["question"] == QUESTION) & (summary["subject"] == group)]
    if mine.empty or pd.isna(mine[FINAL_LOSSES].iloc[0]):
        return ""
    row = mine.iloc[0]
    return (f" The final losses alone reach {percent_cell(row[FINAL_LOSSES])} "
            f"({row[f'{FINAL_LOSSES} classifier']}): {row['verdict']}.")


def _p_cell(p: float) -> str:
    return "—" if pd.isna(p) else f"{p:.2g}"


def _sentence(question: str, best: pd.Series, verdict: str, n_tried: int,
              recall: dict[str, float]) -> str:
    """The headline in words; `best` is the chosen classifier's result row."""
    accuracy, low, high, chance = (percent_cell(float(best[k]))
                                   for k in ("cv_mean", "ci_low", "ci_high", "chance"))
    per_task = ", ".join(f"{task} {percent_cell(r)}"
                         for task, r in sorted(recall.items(), key=lambda kv: -kv[1]))
    words = ("above chance" if verdict == ABOVE_CHANCE
             else "not distinguishable from chance, so noise")
    return (f"{question} From its raw weights alone, {best['classifier']} (the best of {n_tried} "
            f"classifiers) names it for {accuracy} of {int(best['n_networks']):,} networks (95% "
            f"interval {low}–{high}, cross-validated) against {chance} by chance: {words} "
            f"(one-sided binomial p = {float(best['p_value']):.2g}, to be below "
            f"{SIGNIFICANCE / n_tried:.2g} as {n_tried} classifiers were tried). "
            f"Recall per task: {per_task}.")
