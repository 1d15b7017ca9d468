"""What a worker tells the person running it: plain timestamped log lines (units, epochs, networks
converged, median and best validation loss, model-steps/s, ETA) at a steady interval, so a worker under
nohup or systemd leaves a useful log, and a terminal shows the same lines as they come."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

from mlc.work import EpochProgress, WorkUnit

__all__ = ["WorkerProgress"]

_log = logging.getLogger("mlc.worker")


class WorkerProgress:
    """Logs a batch's start and end, and its epochs at most every `interval_s` seconds."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._started = self._last = 0.0
        self._epochs = self._networks = self._done = self._steps = 0
        self._step_seconds = 0.0

    def batch_started(self, units: Sequence[WorkUnit]) -> None:
        self._networks = sum(len(u.spec.members) for u in units)
        self._epochs = max(u.spec.epochs for u in units)
        self._started = self._last = time.monotonic()
        self._steps, self._step_seconds = 0, 0.0
        _log.info("training %d unit(s), %d networks, %d epochs", len(units), self._networks, self._epochs)

    def epoch(self, report: EpochProgress) -> None:
        self._steps += report.model_steps
        self._step_seconds += report.seconds
        now = time.monotonic()
        if now - self._last < self.interval_s and report.epochs_done < report.epochs:
            return
        self._last = now
        elapsed = now - self._started
        rate = report.epochs_done / elapsed if elapsed > 0 else 0.0
        eta = (report.epochs - report.epochs_done) / rate if rate > 0 else math.nan
        loss = (
            f", val loss median {report.val_loss_median:.4f} best {report.val_loss_best:.4f}"
            if math.isfinite(report.val_loss_median)
            else ""
        )
        speed = self._steps / self._step_seconds if self._step_seconds > 0 else 0.0
        _log.info(
            "epoch %d/%d, %d of %d networks training, %d converged%s, %.0f model-steps/s, ETA %s",
            report.epochs_done,
            report.epochs,
            report.n_active,
            report.n_networks,
            report.n_converged,
            loss,
            speed,
            "-" if math.isnan(eta) else f"{eta:.0f} s",
        )

    def batch_done(self, units: Sequence[WorkUnit]) -> None:
        self._done += len(units)
        _log.info(
            "batch done in %.1f s; %d unit(s) trained so far", time.monotonic() - self._started, self._done
        )

    def uploaded(self, total: int) -> None:
        if total:
            _log.info("%d result(s) uploaded so far", total)

    def idle(self, wait_s: float) -> None:
        _log.info("no work from the server; asking again in %.0f s", wait_s)
