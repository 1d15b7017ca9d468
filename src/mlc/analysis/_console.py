"""A console view of the trojan-detection table, for the CLI to print when the report is done."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from rich.table import Table

from mlc.analysis._section import percent_cell
from mlc.analysis._suite import CLASSIFIER_NAMES, OK

__all__ = ["trojan_summary"]


def trojan_summary(table: pd.DataFrame,
                   classifiers: Sequence[str] = CLASSIFIER_NAMES) -> Table:
    """Table 2 as a rich Table: per machine and classifier "ours (MLDS)"; a row that could not be
    evaluated shows its status instead. `table` is `AnalysisReport.tables["trojan_detection"]`."""
    shown = [c for c in classifiers if c in table.columns]
    out = Table(title="Trojan detection: validation accuracy, ours (MLDS)")
    out.add_column("machine", no_wrap=True)
    out.add_column("N", justify="right")
    for c in shown:
        out.add_column(c, justify="right")
    out.add_column("status")
    for row in table.to_dict("records"):
        n = "—" if pd.isna(row["n_per_class"]) else f"{int(row['n_per_class']):,}"
        cells = [f"{percent_cell(row[c])} ({percent_cell(row[f'{c} (MLDS)'])})" for c in shown]
        status = "" if row["status"] == OK else f"[yellow]{row['status']}[/]"
        out.add_row(str(row["machine"]), n, *cells, status)
    return out
