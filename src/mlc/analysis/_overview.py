"""Report part 0: what data the analysis saw, and what it left out and why."""

from __future__ import annotations

from typing import Self

import pandas as pd

from mlc.analysis._data import MergedData
from mlc.analysis._section import ReportTable, Section

__all__ = ["DataOverview", "selection_line"]


def selection_line(summary: pd.DataFrame, converged_only: bool) -> str:
    """The filter the analysis applied and how many networks it left, in one sentence; `summary` is
    `MergedData.summary` (the report's `data_summary` table)."""
    n_stored, n_converged = int(summary["n_networks"].sum()), int(summary["n_converged"].sum())
    n_used = int(summary["n_analysed"].sum())
    rule = ("converged networks only (--converged-only)" if converged_only
            else "none (converged and not converged networks alike)")
    return (f"Filter: {rule}; {n_converged:,} of {n_stored:,} stored networks converged; "
            f"{n_used:,} analysed.")


class DataOverview:
    """Counts per dataset, task and device kind. Fitted: `table_`, `section_`."""

    def run(self, data: MergedData) -> Self:
        summary = data.summary
        self.table_ = summary
        n_stored, n_used = int(summary["n_networks"].sum()), int(summary["n_analysed"].sum())
        n_nonfinite, n_copies = int(summary["n_nonfinite"].sum()), int(summary["n_duplicates"].sum())
        datasets = ", ".join(summary["dataset"].unique())  # in the order given, as in the title
        paragraphs = [
            f"Datasets: {datasets}. {n_used:,} of {n_stored:,} stored networks are analysed "
            f"({len(data.tasks)} tasks; at most {data.max_per_class:,} per task and device kind).",
            selection_line(summary, data.converged_only),
        ]
        if n_copies:
            paragraphs.append(f"{n_copies:,} networks are copies of networks in an earlier dataset "
                              "(bit-identical weights) and are analysed once; they are counted in "
                              "the n_duplicates column.")
        if n_nonfinite:
            paragraphs.append(f"{n_nonfinite:,} networks with non-finite weights are left out; "
                              "they are counted in the n_nonfinite column.")
        self.section_ = Section(
            "Data", tuple(paragraphs),
            tables=(ReportTable("data_summary", summary,
                                "Networks per dataset, task and device kind: stored, converged, "
                                "copies of networks in an earlier dataset, selected for analysis, "
                                "left out for non-finite weights, analysed."),))
        return self
