"""A console view of the trojan-detection table, for the CLI to print when the report is done."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from rich import box
from rich.table import Table

from mlc.analysis._section import percent_cell
from mlc.analysis._suite import CLASSIFIER_NAMES, OK

__all__ = ["trojan_summary"]


# Console headers short enough that the table fits an 80-column terminal; the report keeps the full names.
_SHORT_NAMES = {"DecisionTree": "Tree", "RandomForest": "Forest", "NaiveBayes": "Bayes"}


def trojan_summary(table: pd.DataFrame,
                   classifiers: Sequence[str] = CLASSIFIER_NAMES) -> Table:
    """Table 2 as a rich Table: per machine and classifier "ours (MLDS)". Rows that could not be
    evaluated are listed under the table by reason, where a status column squeezed the classifier
    columns of an 80-column terminal to "Deci…". `table` is
    `AnalysisReport.tables["trojan_detection"]`."""
    shown = [c for c in classifiers if c in table.columns]
    out = Table(title="Trojan detection: validation accuracy %, ours (MLDS)", box=box.SIMPLE_HEAD,
                pad_edge=False, show_edge=False, collapse_padding=True)
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
    if not_evaluated:
        out.caption = "\n".join(f"not evaluated, {why}: {', '.join(m)}" for why, m in not_evaluated.items())
        out.caption_style = "yellow"
    return out


def _number(value: float) -> str:
    """A percent cell without its sign (the title carries it): "87" fits where "87%" wrapped."""
    return percent_cell(value).rstrip("%")
