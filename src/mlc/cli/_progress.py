"""The live progress of `mlc run`: on a terminal one rich display (a bar over the epoch budget with
its ETA, and under it networks finished and converged, the batch's epoch, validation loss and speed);
elsewhere (a pipe, nohup, a batch scheduler) plain timestamped lines at a steady interval, or one JSON
object per line for machines. No per-item log lines either way.

All three read the same `RunMetrics`, fed by the executor's events (plain data: no tensors here).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from mlc.coordinator import ExperimentStatus
    from mlc.work import EpochProgress

__all__ = ["LOG_FORMATS", "LineProgress", "RichProgress", "RunMetrics", "make_progress"]

LOG_FORMATS = ("auto", "rich", "text", "json")


def clock(seconds: float | None) -> str:
    """0:01:05, or "-:--:--" where there is no estimate yet."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class RunMetrics:
    """What a run has done so far, from the executor's events.

    The budget is networks x max_epochs; a network that converges early completes the rest of its
    budget when its unit is assimilated, so the remaining budget (and the ETA, which divides it by the
    epochs actually trained per second since the start) is an upper bound that shrinks as networks
    converge. Converged counts the assimilated networks and those of the batch in training.
    """

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs
        self.status: ExperimentStatus | None = None
        self.population_size = 0
        self.budget_total = self.budget_done = 0
        self.last: EpochProgress | None = None
        self._started = 0.0
        self._trained = 0  # network-epochs trained by this run
        self._rate: float | None = None  # network-epochs per second, as of the last epoch
        self._rate_at = 0.0
        self._steps, self._step_seconds = 0, 0.0
        self._converged_in_batch: dict[int, int] = {}  # population -> its networks converged so far

    def started(self, status: ExperimentStatus, population_size: int) -> None:
        self.population_size = population_size
        self._started = time.monotonic()
        self.assimilated(status)

    def epoch(self, progress: EpochProgress) -> None:
        self.last = progress
        trained = progress.n_active + progress.n_stopped_now
        self._trained += trained
        self._rate_at = time.monotonic()
        elapsed = self._rate_at - self._started
        self._rate = self._trained / elapsed if elapsed > 0 else None
        self.budget_done += trained
        self._steps += progress.model_steps
        self._step_seconds += progress.seconds
        self._converged_in_batch[progress.population] = progress.n_converged

    def assimilated(self, status: ExperimentStatus) -> None:
        self.status = status
        self.budget_total = status.n_networks * self.max_epochs
        self.budget_done = status.budget_done(self.max_epochs)
        self._converged_in_batch.clear()
        self.last = None

    @property
    def batch_epochs(self) -> int | None:
        """The batch's budget: its units' epochs, but no more than the networks may train."""
        return min(self.last.epochs, self.max_epochs) if self.last else None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    @property
    def n_converged(self) -> int:
        base = self.status.n_converged if self.status else 0
        return base + sum(self._converged_in_batch.values())

    @property
    def steps_per_second(self) -> float | None:
        return self._steps / self._step_seconds if self._step_seconds > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far (as of the last epoch, counting down since); None before
        the first epoch."""
        if not self._rate:
            return None
        left = max(self.budget_total - self.budget_done, 0) / self._rate
        return max(left - (time.monotonic() - self._rate_at), 0.0)

    def fields(self) -> dict[str, object]:
        """The numbers a log line carries (JSON-ready; None where there is none yet)."""
        s, p = self.status, self.last
        rate = self.steps_per_second
        out: dict[str, object] = {
            "population_size": self.population_size,
            "training": s.n_training if s else 0,
            "epochs_done": self.budget_done,
            "epochs_total": self.budget_total,
            "networks": s.n_networks if s else 0,
            "finished": s.n_finished if s else 0,
            "converged": self.n_converged,
            "failed": s.n_failed if s else 0,
            "batch_epoch": p.epochs_done if p else None,
            "batch_epochs": self.batch_epochs,
            "batch_active": p.n_active if p else None,
            "batch_networks": p.n_networks if p else None,
            "val_loss_median": _finite(p.val_loss_median) if p else None,
            "val_loss_best": _finite(p.val_loss_best) if p else None,
            "model_steps_per_s": round(rate, 1) if rate is not None else None,
            "elapsed_s": round(self.elapsed, 1),
            "eta_s": round(eta, 1) if (eta := self.eta) is not None else None,
        }
        return out

    def details(self) -> str:
        """Networks, the batch, loss and speed in words."""
        s, p = self.status, self.last
        if s is None:
            return ""
        text = f"networks {s.n_finished}/{s.n_networks} finished, {self.n_converged} converged"
        if s.n_failed:
            text += f", {s.n_failed} failed"
        if p is not None:
            text += f" · batch epoch {p.epochs_done}/{self.batch_epochs}, {p.n_active}/{p.n_networks} active"
            if math.isfinite(p.val_loss_median):
                text += f" · val loss median {p.val_loss_median:.4f}, best {p.val_loss_best:.4f}"
        if (rate := self.steps_per_second) is not None:
            text += f" · {rate:,.0f} model-steps/s"
        return text


def _finite(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


class _EtaColumn(ProgressColumn):
    """The run's own ETA, computed at every refresh so it counts down between epochs."""

    def __init__(self, metrics: RunMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render(self, task: Task) -> Text:
        return Text(f"ETA {clock(self.metrics.eta)}", style="progress.remaining")


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
    """Implements `mlc.executors.ProgressSink` on a rich Progress bar, for a terminal. The ETA is the
    run's own (`RunMetrics.eta`): rich's waits for a window of samples, which left it blank for the
    first 15 seconds."""

    def __init__(self, console: Console, max_epochs: int) -> None:
        self.metrics = RunMetrics(max_epochs)
        self._progress = _BarThenDetails(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs"),
            TimeElapsedColumn(),
            _EtaColumn(self.metrics),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task("training", total=1)

    def __enter__(self) -> RichProgress:
        return self  # the display starts with the training, so a refused run shows no empty bar

    def __exit__(self, *exc: object) -> None:
        if self._progress.live.is_started:
            self._progress.stop()

    def _show(self) -> None:
        m = self.metrics
        self._progress.details = m.details()
        self._progress.update(self._task, total=max(m.budget_total, 1), completed=m.budget_done)

    def started(self, status: ExperimentStatus, population_size: int) -> None:
        self.metrics.started(status, population_size)
        self._progress.console.print(
            f"training {status.n_training} networks, up to {population_size} at once"
        )
        self._progress.reset(self._task, total=max(self.metrics.budget_total, 1))
        self._show()
        self._progress.start()

    def epoch(self, progress: EpochProgress) -> None:
        self.metrics.epoch(progress)
        self._show()

    def assimilated(self, status: ExperimentStatus) -> None:
        self.metrics.assimilated(status)
        self._show()


class LineProgress:
    """Implements `mlc.executors.ProgressSink` as log lines: one when training starts, then one at
    most every `interval_s` seconds (on the epoch or batch that passes the mark), and a last one when
    the run ends. `json` writes each as one JSON object per line; else a UTC time stamp and words."""

    def __init__(
        self,
        stream: TextIO,
        max_epochs: int,
        interval_s: float = 10.0,
        json: bool = False,
    ) -> None:
        self.metrics = RunMetrics(max_epochs)
        self.stream = stream
        self.interval_s = interval_s
        self.json = json
        self._last = -math.inf

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.metrics.status is not None:
            self._emit("end")

    def _emit(self, event: str) -> None:
        now = dt.datetime.now(dt.UTC)
        m = self.metrics
        if self.json:
            line = json.dumps({"time": now.isoformat(timespec="seconds"), "event": event, **m.fields()})
        else:
            pct = 100 * m.budget_done / max(m.budget_total, 1)
            line = (
                f"{now:%Y-%m-%d %H:%M:%S} epochs {m.budget_done}/{m.budget_total} ({pct:.0f}%), "
                f"{m.details()}, elapsed {clock(m.elapsed)}, ETA {clock(m.eta)}"
            )
        self.stream.write(line + "\n")
        self.stream.flush()
        self._last = time.monotonic()

    def _maybe_emit(self) -> None:
        if time.monotonic() - self._last >= self.interval_s:
            self._emit("progress")

    def started(self, status: ExperimentStatus, population_size: int) -> None:
        self.metrics.started(status, population_size)
        if not self.json:  # the terminal display's first line too (JSON has it as fields)
            self.stream.write(f"training {status.n_training} networks, up to {population_size} at once\n")
        self._emit("start")

    def epoch(self, progress: EpochProgress) -> None:
        self.metrics.epoch(progress)
        self._maybe_emit()

    def assimilated(self, status: ExperimentStatus) -> None:
        self.metrics.assimilated(status)
        if not status.complete:  # the end's line says the rest
            self._maybe_emit()


def make_progress(
    console: Console, log_format: str, max_epochs: int, interval_s: float
) -> RichProgress | LineProgress:
    """The display for `--log-format`: "auto" is rich on a terminal and text lines elsewhere."""
    if log_format == "auto":
        log_format = "rich" if console.is_terminal else "text"
    if log_format == "rich":
        return RichProgress(console, max_epochs)
    return LineProgress(console.file, max_epochs, interval_s, json=log_format == "json")
