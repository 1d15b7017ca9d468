"""Reshaping the long result rows (one per subject, feature set and classifier) into the wide tables
a reader compares at a glance (one row per subject, classifiers across)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from mlc.analysis._suite import OK, signal

__all__ = ["int_counts", "per_subject", "shown_status"]


def per_subject(results: pd.DataFrame, key: str, values: Mapping[str, str],
                classifiers: Sequence[str]) -> pd.DataFrame:
    """One row per `subject` of `results` (renamed `key`), with its n_per_class, n_folds and status,
    then for each classifier and each `suffix -> column` of `values` a column `<classifier><suffix>`,
    and last `signal`: whether the row's best classifier beats chance (see `signal`)."""
    rows = []
    for subject, group in results.groupby("subject", sort=False):
        by_clf = group.set_index("classifier")
        first = group.iloc[0]
        row: dict[str, object] = {key: subject, "n_per_class": first["n_per_class"],
                                  "n_folds": first["n_folds"], "status": first["status"]}
        for c in classifiers:
            for suffix, column in values.items():
                row[f"{c}{suffix}"] = by_clf.at[c, column]
        row["signal"] = signal(group["p_value"].tolist())
        rows.append(row)
    columns = [key, "n_per_class", "n_folds", "status",
               *(f"{c}{suffix}" for c in classifiers for suffix in values), "signal"]
    return int_counts(pd.DataFrame(rows, columns=columns), ["n_per_class", "n_folds"])


def shown_status(table: pd.DataFrame) -> list[str]:
    """The status a reader sees: "ok" says only that the row was evaluated, so an evaluated row
    shows its signal instead ("above chance", or that it is noise); others say why they were not."""
    return [sig if status == OK and sig else str(status)
            for status, sig in zip(table["status"], table["signal"], strict=True)]


def int_counts(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Counts as nullable integers, so a missing count shows as empty rather than as 1000.0."""
    return frame.astype({c: "Int64" for c in columns})
