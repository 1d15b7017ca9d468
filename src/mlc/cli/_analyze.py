"""`mlc analyze`: the weight-space analysis report for one or more datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlc.cli._app import app, console, emit_json, path_value, require_extra

__all__ = ["analyze", "write_report"]


def write_report(
    datasets: list[Path],
    out: Path,
    max_per_class: int = 1000,
    converged_only: bool = False,
    as_json: bool = False,
) -> None:
    """Write the report and print its headline table and where the files are (`as_json`: one JSON
    line with where they are)."""
    from mlc.analysis import analyze as run_analysis
    from mlc.analysis import console_summary, selection_line

    report = run_analysis(datasets, out, max_per_class=max_per_class, converged_only=converged_only)
    if as_json:
        emit_json("analysis", html=str(report.html), markdown=str(report.markdown), files=len(report.files),
                  converged_only=converged_only)  # fmt: skip
        return
    console.print(selection_line(report.tables["data_summary"], converged_only))
    console.print(console_summary(report.tables))
    console.print(
        f"analysis report: [bold]{report.html}[/] (and {report.markdown.name}, "
        f"{len(report.files)} files in {out})"
    )


@app.command(short_help="Analyse datasets' weights; write the report.")
def analyze(
    datasets: Annotated[
        list[Path],
        typer.Argument(parser=path_value, help="dataset directories (merged, e.g. a DS1 and a DS2 run)"),
    ],
    out: Annotated[
        Path,
        typer.Option(parser=path_value, help="folder for report.md, report.html, CSV tables and PNG plots"),
    ],
    max_per_class: Annotated[
        int, typer.Option(min=10, help="networks per task (and device) used at most")  # MIN_PER_CLASS
    ] = 1000,
    converged_only: Annotated[
        bool,
        typer.Option(
            "--converged-only",
            help="leave out networks that did not converge (compare with a run without it, so that "
            "'converged or not' is not mistaken for the question asked)",
        ),
    ] = False,
) -> None:
    """Can the weights tell which data trained a network? Writes the analysis report.

    Trojan detection, task identification, learning curve, CPU vs GPU, projections and honest
    baselines, as tables (Markdown, HTML, CSV) and PNG plots in OUT."""
    require_extra("analysis", "mlc analyze")
    write_report(datasets, out, max_per_class, converged_only)
