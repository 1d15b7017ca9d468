"""Table 2 in one view: DS1 vs DS2 per machine, on all networks and on converged ones, beside the
final-loss baseline and the original's numbers, each with its 95% interval.

Reads what `mlc analyze` wrote (`baselines.csv`: every classifier on every feature set, with the
Wilson interval of its cross-validated accuracy over all held-out predictions; `data_summary.csv`:
networks and converged networks per task) for two reports of the same dataset, one made with
`--converged-only`, and prints a Markdown table (docs/MLDS.md section 11 holds its output):

    .venv/bin/python benchmarks/table2_summary.py runs/mlds4-ds100/analysis-all \\
        runs/mlds4-ds100/analysis-converged

Each cell is the best classifier of its feature set. The best of six is an optimistic pick: read its
interval, and the row's verdict in the report (binomial test, corrected for the six tried), before
calling a row a finding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mlc.analysis import FINAL_LOSSES, MLDS_TABLE2, RAW_WEIGHTS, WEIGHT_STATISTICS
from mlc.analysis._trojan import QUESTION
from mlc.analysis._twins import clean_task, trojan_task


def best_cell(results: pd.DataFrame, machine: str, features: str) -> str:
    """'NaiveBayes 72% (57-84%)': the feature set's best classifier by cross-validated accuracy,
    or the row's status where it was not evaluated."""
    rows = results[(results["subject"] == machine) & (results["features"] == features)]
    scored = rows[rows["cv_mean"].notna()]
    if scored.empty:
        return str(rows["status"].iloc[0]) if len(rows) else "-"
    best = scored.loc[scored["cv_mean"].idxmax()]
    return (f"{best['classifier']} {best['cv_mean']:.0%} "
            f"({best['ci_low']:.0%}-{best['ci_high']:.0%})")


def counts(summary: pd.DataFrame, task: str) -> tuple[int, int]:
    """(stored, converged) networks of `task`."""
    rows = summary[summary["task"] == task]
    return int(rows["n_networks"].sum()), int(rows["n_converged"].sum())


def table(all_dir: Path, converged_dir: Path) -> str:
    every = pd.read_csv(all_dir / "baselines.csv")
    conv = pd.read_csv(converged_dir / "baselines.csv")
    summary = pd.read_csv(all_dir / "data_summary.csv")
    every, conv = (f[f["question"] == QUESTION] for f in (every, conv))
    header = ["machine", "DS1 / DS2 networks (converged)", "raw weights, all", "final losses, all",
              "weight statistics, all", "raw weights, converged only", "final losses, converged only",
              "MLDS's best (raw weights)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for machine, theirs in MLDS_TABLE2.items():
        (n1, c1), (n2, c2) = counts(summary, clean_task(machine)), counts(summary, trojan_task(machine))
        if n1 == n2 == 0:  # a run of some machines only (benchmarks/presets/mlds5-singlebit-pairs.toml)
            continue
        best_theirs = max(theirs, key=lambda k: theirs[k])
        cells = [machine, f"{n1} ({c1}) / {n2} ({c2})",
                 best_cell(every, machine, RAW_WEIGHTS), best_cell(every, machine, FINAL_LOSSES),
                 best_cell(every, machine, WEIGHT_STATISTICS),
                 best_cell(conv, machine, RAW_WEIGHTS), best_cell(conv, machine, FINAL_LOSSES),
                 f"{best_theirs} {theirs[best_theirs]:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("all", type=Path, help="report folder of `mlc analyze` on all networks")
    p.add_argument("converged", type=Path, help="report folder of `mlc analyze --converged-only`")
    args = p.parse_args()
    print(table(args.all, args.converged))


if __name__ == "__main__":
    main()
