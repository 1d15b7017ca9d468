"""What a report part hands to the writer: text, tables and figures, not yet on disk.

Parts compute; the writer (`_render`) decides file names, formats and layout. A table carries its
numeric form (written as CSV, for anyone re-analysing) and optionally a display form (percentages,
"mean ± std") for the Markdown and HTML pages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

__all__ = [
    "ReportFigure",
    "ReportTable",
    "Section",
    "Step",
    "mean_std_cell",
    "percent_cell",
    "percents",
    "quiet",
]

Step = Callable[[str], None]  # a part says what it is doing now; the report shows it as progress


def quiet(_: str) -> None:
    """The `Step` that shows nothing."""


@dataclass(frozen=True, eq=False)
class ReportTable:
    name: str  # file stem of its CSV
    data: pd.DataFrame
    caption: str
    display: pd.DataFrame | None = None
    inline: bool = True  # False: too long to read at once; shown folded, opened on demand

    @property
    def shown(self) -> pd.DataFrame:
        return self.data if self.display is None else self.display


@dataclass(frozen=True, eq=False)
class ReportFigure:
    name: str  # file stem of its PNG
    figure: Figure
    caption: str


@dataclass(frozen=True, eq=False)
class Section:
    title: str
    paragraphs: tuple[str, ...]
    tables: tuple[ReportTable, ...] = ()
    figures: tuple[ReportFigure, ...] = ()


def percent_cell(value: float) -> str:
    """0.873 -> "87%" (the original table's precision); NaN -> "—"."""
    return "—" if pd.isna(value) else f"{100 * value:.0f}%"


def mean_std_cell(mean: float, std: float) -> str:
    return "—" if pd.isna(mean) else f"{100 * mean:.0f} ± {100 * std:.0f}%"


def percents(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """A copy of `frame` with `columns` shown as percentages."""
    shown = frame.copy()
    for column in columns:
        shown[column] = shown[column].map(percent_cell).astype(object)
    return shown
