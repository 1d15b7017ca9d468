"""The one live progress display of `mlc run`: a bar over the epoch budget with its ETA, and under it
networks finished and converged and the current batch's epoch. No per-item log lines."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from mlc.coordinator import ExperimentStatus
from mlc.train import EpochReport

__all__ = ["RichProgress"]


class _BarThenDetails(Progress):
    """The bar, counts and times on one line and the details on the next: on one line they came to
    ~120 characters, and an 80-column terminal cropped the counts and the ETA to "0:0…". The details
    wrap instead of being cropped."""

    details = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.details:
            yield Text(self.details)


class RichProgress:
    """Implements `mlc.executors.ProgressSink` on a rich Progress bar.

    The bar counts epochs of the whole budget (networks x max_epochs); a network that converges early
    completes the rest of its budget at once, so the ETA shrinks as networks converge.
    """

    def __init__(self, console: Console, max_epochs: int, epochs_per_wu: int) -> None:
        self.max_epochs = max_epochs
        self.epochs_per_wu = min(epochs_per_wu, max_epochs)  # what one batch trains at most
        self._progress = _BarThenDetails(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task("training", total=1)

    def __enter__(self) -> RichProgress:
        return self  # the display starts with the training, so a refused run shows no empty bar

    def __exit__(self, *exc: object) -> None:
        if self._progress.live.is_started:
            self._progress.stop()

    def _fields(self, status: ExperimentStatus, batch: str = "") -> str:
        text = f"networks {status.n_finished}/{status.n_networks} finished, {status.n_converged} converged"
        if status.n_failed:
            text += f", {status.n_failed} failed"
        return text + batch

    def started(self, status: ExperimentStatus, population_size: int) -> None:
        self._status = status
        self._progress.console.print(
            f"training {status.n_training} networks, up to {population_size} at once"
        )
        self._progress.details = self._fields(status)
        self._progress.reset(
            self._task,
            total=status.n_networks * self.max_epochs,
            completed=status.budget_done(self.max_epochs),
        )
        self._progress.start()

    def epoch(self, report: EpochReport, n_in_batch: int) -> None:
        batch = (
            f" · batch epoch {report.epochs_done}/{self.epochs_per_wu}, {report.n_active}/{n_in_batch} active"
        )
        self._progress.details = self._fields(self._status, batch)
        self._progress.update(self._task, advance=report.n_active + report.n_stopped_now)

    def assimilated(self, status: ExperimentStatus) -> None:
        self._status = status
        self._progress.details = self._fields(status)
        self._progress.update(self._task, completed=status.budget_done(self.max_epochs))
