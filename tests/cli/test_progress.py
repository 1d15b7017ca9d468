"""`mlc run`'s progress display on an 80-column terminal: nothing a user reads is cropped."""

import io

from rich.console import Console

from mlc.cli._progress import RichProgress
from mlc.coordinator import ExperimentStatus
from mlc.train import EpochReport


def test_counts_eta_and_details_all_fit_80_columns():
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    status = ExperimentStatus(n_networks=1000, n_finished=250, n_converged=120, n_failed=3, epochs_done=0,
                              epochs_training=0)  # fmt: skip
    with RichProgress(console, max_epochs=1000, epochs_per_wu=100) as progress:
        progress.started(status, population_size=128)
        progress.epoch(EpochReport(epochs_done=17, n_active=120, n_stopped_now=8), n_in_batch=128)
    lines = out.getvalue().splitlines()
    assert "training 747 networks, up to 128 at once" in lines
    bar = next(line for line in lines if line.startswith("training ━"))
    assert "253128/1000000 epochs" in bar and "ETA" in bar and "…" not in bar
    details = " ".join(" ".join(line for line in lines if not line.startswith("training")).split())  # wrapped
    assert (
        "networks 250/1000 finished, 120 converged, 3 failed · batch epoch 17/100, 120/128 active" in details
    )


def test_a_batch_never_shows_more_epochs_than_the_budget_and_a_refused_run_shows_no_bar():
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    status = ExperimentStatus(n_networks=10, n_finished=0, n_converged=0, n_failed=0, epochs_done=0,
                              epochs_training=0)  # fmt: skip
    with RichProgress(console, max_epochs=4, epochs_per_wu=8):
        pass  # the executor refused the run before training
    assert out.getvalue() == ""
    with RichProgress(console, max_epochs=4, epochs_per_wu=8) as progress:
        progress.started(status, population_size=10)
        progress.epoch(EpochReport(epochs_done=1, n_active=10, n_stopped_now=0), n_in_batch=10)
    assert "batch epoch 1/4, 10/10 active" in out.getvalue()
