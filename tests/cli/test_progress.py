"""`mlc run`'s progress: on an 80-column terminal nothing a user reads is cropped; elsewhere plain
timestamped lines or JSON objects, with loss, convergence, speed and an ETA from the first epoch."""

import io
import json
import math
import re

from rich.console import Console

from mlc.cli._progress import LineProgress, RichProgress, RunMetrics, make_progress
from mlc.coordinator import ExperimentStatus
from mlc.work import EpochProgress


def _status(**kw: int) -> ExperimentStatus:
    fields = dict(n_networks=1000, n_finished=250, n_converged=120, n_failed=3, epochs_done=0,
                  epochs_training=0)  # fmt: skip
    return ExperimentStatus(**{**fields, **kw})


def _epoch(done: int = 17, active: int = 120, stopped: int = 8, converged: int = 5, population: int = 0,
           median: float = 0.1234, best: float = 0.0456) -> EpochProgress:  # fmt: skip
    return EpochProgress(epochs_done=done, epochs=100, n_networks=128, n_active=active, n_stopped_now=stopped,
                         n_converged=converged, val_loss_median=median, val_loss_best=best,
                         model_steps=128 * 10, seconds=0.5, population=population)  # fmt: skip


def test_counts_eta_loss_and_speed_all_fit_80_columns():
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    with RichProgress(console, max_epochs=1000) as progress:
        progress.started(_status(), population_size=128)
        progress.epoch(_epoch())
    lines = out.getvalue().splitlines()
    assert "training 747 networks, up to 128 at once" in lines
    bar = next(line for line in lines if line.startswith("training ━"))
    assert "253128/1000000 epochs" in bar and "…" not in bar
    assert re.search(r"ETA \d+:\d\d:\d\d", bar), bar  # an estimate after the first epoch
    details = " ".join(" ".join(line for line in lines if not line.startswith("training")).split())  # wrapped
    assert (
        "networks 250/1000 finished, 125 converged, 3 failed · batch epoch 17/100, 120/128 active · "
        "val loss median 0.1234, best 0.0456 · 2,560 model-steps/s" in details
    )


def test_a_refused_run_shows_no_bar():
    out = io.StringIO()
    with RichProgress(Console(file=out, width=80, force_terminal=False), max_epochs=4):
        pass  # the executor refused the run before training
    assert out.getvalue() == ""


def test_converged_counts_each_population_of_a_batch_once_and_resets_when_assimilated():
    metrics = RunMetrics(max_epochs=100)
    metrics.started(_status(), population_size=256)
    assert metrics.eta is None  # nothing trained yet: no estimate rather than a guess
    metrics.epoch(_epoch(converged=2))
    metrics.epoch(_epoch(converged=4))  # the same population later: its count, not a sum
    metrics.epoch(_epoch(converged=3, population=1))
    assert metrics.n_converged == 120 + 4 + 3
    assert metrics.eta is not None and metrics.eta > 0
    metrics.assimilated(_status(n_finished=300, n_converged=127))
    assert metrics.n_converged == 127 and metrics.last is None


def test_lines_come_at_the_interval_with_a_timestamp_and_a_last_one_at_the_end():
    out = io.StringIO()
    with LineProgress(out, max_epochs=1000, interval_s=3600) as progress:
        progress.started(_status(), population_size=128)
        for k in range(1, 6):
            progress.epoch(_epoch(done=k))
    first, *lines = out.getvalue().splitlines()
    assert first == "training 747 networks, up to 128 at once"
    assert len(lines) == 2  # the start and the end: the interval never passed in between
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert re.match(stamp + r" epochs 253640/1000000 \(25%\), networks 250/1000", lines[1])
    assert "batch epoch 5/100" in lines[1] and "val loss median 0.1234" in lines[1] and "ETA" in lines[1]
    out = io.StringIO()
    with LineProgress(out, max_epochs=1000, interval_s=0) as progress:
        progress.started(_status(), population_size=128)
        for k in range(1, 6):
            progress.epoch(_epoch(done=k))
    assert len(out.getvalue().splitlines()) == 8  # every epoch once the interval is 0


def test_json_lines_carry_the_numbers_and_nan_is_null():
    out = io.StringIO()
    with LineProgress(out, max_epochs=1000, interval_s=0, json=True) as progress:
        progress.started(_status(), population_size=128)
        progress.epoch(_epoch(median=math.nan, best=math.nan))
    start, epoch, end = (json.loads(line) for line in out.getvalue().splitlines())
    assert (start["event"], epoch["event"], end["event"]) == ("start", "progress", "end")
    assert start["eta_s"] is None and start["batch_epoch"] is None and start["training"] == 747
    assert epoch["converged"] == 125 and epoch["batch_epoch"] == 17 and epoch["model_steps_per_s"] == 2560.0
    assert epoch["val_loss_median"] is None and epoch["eta_s"] > 0 and "time" in epoch


def test_auto_is_rich_on_a_terminal_and_text_lines_elsewhere():
    pipe = Console(file=io.StringIO(), force_terminal=False)
    assert isinstance(make_progress(pipe, "auto", 10, 10.0), LineProgress)
    assert isinstance(make_progress(Console(file=io.StringIO(), force_terminal=True), "auto", 10, 10.0),
                      RichProgress)  # fmt: skip
    assert make_progress(pipe, "json", 10, 10.0).json
