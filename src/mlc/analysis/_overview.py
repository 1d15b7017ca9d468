"""Report part 0: what data the analysis saw, and what it left out and why."""

from __future__ import annotations

from typing import Self

from mlc.analysis._data import MergedData
from mlc.analysis._section import ReportTable, Section

__all__ = ["DataOverview"]


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
            f"({len(data.tasks)} tasks; at most {data.max_per_class:,} per task and device kind"
            + (", converged networks only" if data.converged_only else "") + ")."
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
