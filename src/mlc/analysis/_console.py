"""Console views of the report's headline table, for the CLI to print when the report is done.

The headline is the question the data can answer: trojan detection (Table 2) where some machine has
both twins, else task identification — a DS3 run has no twins, and five rows of dashes told its
researcher nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mlc.analysis._section import percent_cell
from mlc.analysis._suite import ABOVE_CHANCE, CLASSIFIER_NAMES, OK
from mlc.analysis._twins import clean_task, machines_in, trojan_task

__all__ = ["console_summary", "headline_summary", "identification_summary", "trojan_summary"]


NOISE_NOTE = "noise, no classifier above chance (p < 0.05 after correction)"
# Console headers short enough that the table fits an 80-column terminal; the report keeps the full names.
_SHORT_NAMES = {"DecisionTree": "Tree", "RandomForest": "Forest", "NaiveBayes": "Bayes"}


def console_summary(tables: Mapping[str, pd.DataFrame]) -> RenderableType:
    """What the report found, for a terminal: the headline in a sentence, then the trojan table if
    the data holds a machine and its trojaned twin, else the task-identification summary."""
    tasks = set(tables["task_identification_per_task"]["task"])
    headline = headline_summary(tables["headline"])
    if any(clean_task(m) in tasks and trojan_task(m) in tasks for m in machines_in(tasks)):
        return Group(headline, trojan_summary(tables["trojan_detection"]))
    return Group(headline, identification_summary(tables["task_identification"]))


def headline_summary(table: pd.DataFrame) -> RenderableType:
    """The headline row (`AnalysisReport.tables["headline"]`) in one line: accuracy, its 95%
    interval, chance and the verdict."""
    row = table.iloc[0]
    if row["status"] != OK:
        return Text(f"{row['question']} Not evaluated: {row['status']}.", style="yellow")
    style = "bold green" if row["signal"] == ABOVE_CHANCE else "bold yellow"
    return Text.assemble(
        (f"{row['question']} ", "bold"),
        f"{row['classifier']} on {row['features']}: ",
        (f"{percent_cell(row['accuracy'])}", "bold"),
        f" (95% interval {percent_cell(row['ci_low'])}–{percent_cell(row['ci_high'])}) of "
        f"{int(row['n_networks']):,} networks, {int(row['n_classes'])} classes, chance "
        f"{percent_cell(row['chance'])}: ",
        (str(row["signal"]), style))


def identification_summary(table: pd.DataFrame) -> RenderableType:
    """Task identification per feature set (rows) and classifier (columns), or one line saying why
    it could not run, for the first group of tasks (the DS1 machines where the data has them).
    `table` is `AnalysisReport.tables["task_identification"]`."""
    group = table["subject"].iloc[0]
    table = table[table["subject"] == group]
    done = table[table["status"] == OK]
    if done.empty:
        reasons = "; ".join(dict.fromkeys(table["status"].astype(str)))
        return Text(f"Task identification not evaluated: {reasons}.", style="yellow")
    classifiers = list(dict.fromkeys(table["classifier"]))
    first = done.iloc[0]
    title = f"Task identification ({group}): cross-validated accuracy %"
    out = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                collapse_padding=True, min_width=len(title))  # a title wider than the table wraps
    out.add_column("features", no_wrap=True)
    for c in classifiers:
        out.add_column(_SHORT_NAMES.get(c, c), justify="right", no_wrap=True)
    accuracy = table.set_index(["features", "classifier"])["cv_mean"]
    for features in dict.fromkeys(table["features"]):
        out.add_row(str(features), *(_number(accuracy.get((features, c), float("nan")))
                                     for c in classifiers))
    notes = [f"{int(first['n_classes'])} tasks, chance {_number(first['chance'])}"]
    failed = table[table["status"] != OK]
    notes += [f"not evaluated, {why}: "
              + ", ".join(f"{r.classifier} on {r.features}" for r in rows.itertuples())
              for why, rows in failed.groupby("status", sort=False)]
    out.caption = "\n".join(notes)
    return out


def trojan_summary(table: pd.DataFrame,
                   classifiers: Sequence[str] = CLASSIFIER_NAMES) -> Table:
    """Table 2 as a rich Table: per machine and classifier "ours (MLDS)". Rows that could not be
    evaluated are listed under the table by reason, where a status column squeezed the classifier
    columns of an 80-column terminal to "Deci…". `table` is
    `AnalysisReport.tables["trojan_detection"]`."""
    shown = [c for c in classifiers if c in table.columns]
    title = "Trojan detection: validation accuracy %, ours (MLDS)"
    out = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                collapse_padding=True, min_width=len(title))
    out.add_column("machine", no_wrap=True)
    out.add_column("N", justify="right", no_wrap=True)
    for c in shown:
        out.add_column(_SHORT_NAMES.get(c, c), justify="right", no_wrap=True)
    not_evaluated: dict[str, list[str]] = {}
    for row in table.to_dict("records"):
        n = "—" if pd.isna(row["n_per_class"]) else f"{int(row['n_per_class']):,}"
        cells = [f"{_number(row[c])} ({_number(row[f'{c} (MLDS)'])})" for c in shown]
        out.add_row(str(row["machine"]), n, *cells)
        if row["status"] != OK:
            not_evaluated.setdefault(str(row["status"]), []).append(str(row["machine"]))
        elif row["signal"] != ABOVE_CHANCE:
            not_evaluated.setdefault(NOISE_NOTE, []).append(str(row["machine"]))
    if not_evaluated:
        out.caption = "\n".join(f"{why}: {', '.join(m)}" if why == NOISE_NOTE
                                else f"not evaluated, {why}: {', '.join(m)}"
                                for why, m in not_evaluated.items())
        out.caption_style = "yellow"
    return out


def _number(value: float) -> str:
    """A percent cell without its sign (the title carries it): "87" fits where "87%" wrapped."""
    return percent_cell(value).rstrip("%")
