"""One progress display for a whole report: a bar over the parts, its text saying what runs now.

Parts report through a `Step` callback and never print, so the display stays one line however many
classifiers run; with `enabled=False` nothing is shown (tests, non-interactive callers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["ReportProgress", "report_progress"]


class ReportProgress:
    """`step(text)` says what runs now; `advance()` marks one part done."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task

    def step(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=text)

    def advance(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)


@contextmanager
def report_progress(n_parts: int, *, enabled: bool) -> Iterator[ReportProgress]:
    """A progress display over `n_parts` parts, on stderr so stdout stays for results."""
    if not enabled:
        yield ReportProgress(None, None)
        return
    columns = (SpinnerColumn(), TextColumn("[bold]analysis[/]"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=Console(stderr=True)) as progress:
        yield ReportProgress(progress, progress.add_task("starting", total=n_parts))
