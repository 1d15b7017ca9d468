"""The coordinator service: one object that every transport drives (local, Ray, HTTP).

It holds the database engine and, made on first use, the server's own copy of each experiment's data
and the dataset writers. `lease`, `extend` and `report` are the scheduler's calls; the transitioner,
validator and assimilator are BOINC's daemons, each a pass that runs once (`run_pass`) or as a
poll/sleep loop (`run_daemon`) that writes a heartbeat after every pass.

The lease and report path loads no torch: the validator's and assimilator's modules (which re-evaluate
networks and write datasets) are imported by their passes, so a web process that only answers leases
and stores uploads never loads the trainer.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from mlc.coordinator._daemons import DAEMONS, record_heartbeat
from mlc.coordinator._experiments import ended_experiments
from mlc.coordinator._replication import DEFAULT_REPLICATION, ReplicationPolicy
from mlc.coordinator._scheduler import (
    DEFAULT_MAX_ATTEMPTS,
    ReportOutcome,
    apply_transitions,
    extend_leases,
    lease_work,
    release_leases,
    report_result,
)
from mlc.work import WorkUnit

if TYPE_CHECKING:
    from mlc.coordinator._serverdata import ServerData
    from mlc.store import DatasetWriter

__all__ = ["CoordinatorService"]

_log = logging.getLogger(__name__)


class CoordinatorService:
    """The pipeline over one database: leases and reports, and the daemons' passes.

    `max_attempts` is how many leases a unit gets before it fails; `replication` how volunteer
    hosts' units are sent to replica hosts (results of our own executors never are). Writers are
    cached per experiment, so one service may run several experiments at once (the server does).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        replication: ReplicationPolicy = DEFAULT_REPLICATION,
    ) -> None:
        self.engine = engine
        self.max_attempts = max_attempts
        self.replication = replication
        self._server: ServerData | None = None
        self._writers: dict[str, DatasetWriter] = {}
        self._lock = threading.Lock()  # writers and server data are built once, whichever thread asks

    # -- the scheduler's calls (no torch) ---------------------------------------------------------

    def lease(
        self,
        owner: str,
        max_members: int,
        lease_seconds: float,
        *,
        experiment_id: int | None = None,
        queues: tuple[str, ...] | None = None,
        kernel_class: str | None = None,
    ) -> list[WorkUnit]:
        """Ready units of running experiments (in `queues`, where given) holding up to about
        `max_members` networks, leased to `owner` (of `kernel_class`, where known: units waiting for
        a replica of that class are among them) for `lease_seconds`."""
        return lease_work(
            self.engine, owner, max_members, lease_seconds, experiment_id, self.max_attempts, queues,
            kernel_class,
        )

    def extend(self, owner: str, wu_ids: list[str], lease_seconds: float) -> list[str]:
        """Push the deadlines of `owner`'s leases on `wu_ids` out by `lease_seconds` from now (the
        worker's heartbeat); returns the ids it still holds (a unit reissued to another host is not)."""
        return extend_leases(self.engine, owner, wu_ids, lease_seconds)

    def release(self, owner: str, wu_ids: list[str]) -> list[str]:
        """Give `owner`'s leases on `wu_ids` back now (its training of them was lost): the units return
        to the queue, or fail after `max_attempts` leases; returns the ids released."""
        return release_leases(self.engine, owner, wu_ids, self.max_attempts)

    def report(self, wu_id: str, payload: bytes, reporter: str) -> ReportOutcome:
        return report_result(self.engine, wu_id, payload, reporter, self.max_attempts)

    # -- the daemons' passes ----------------------------------------------------------------------

    def transition_pass(self) -> int:
        """Expired leases back to the queue (or failed); returns the units that changed state."""
        return apply_transitions(self.engine, self.max_attempts)

    def validate_pass(self) -> int:
        """Judge every pending result by re-evaluation, then settle the credit of what was judged
        (and of what was voided since); returns how many were judged."""
        from mlc.coordinator._credit import settle_credit
        from mlc.coordinator._validator import validate_pending

        valid, invalid = validate_pending(self.engine, self.server_data, self.max_attempts, self.replication)
        settle_credit(self.engine)
        return valid + invalid

    def assimilate_pass(self) -> int:
        """Fold validated results into the datasets, and finalize the dataset of every experiment
        that has ended (finished, or cancelled) since; returns the networks that finished."""
        from mlc.coordinator._assimilator import assimilate_valid

        n = assimilate_valid(self.engine, self.server_data, lambda exp: self.writer(exp.name))
        for name in ended_experiments(self.engine):
            writer = self.writer(name)
            if not writer.finalized:
                writer.finalize()
        return n

    def drain(self) -> None:
        """Validate and assimilate everything that has arrived (what an in-process run does after
        each batch, where no daemons run beside it)."""
        self.validate_pass()
        self.assimilate_pass()

    def run_pass(self, daemon: str) -> int:
        """One pass of the daemon named `daemon` (one of DAEMONS), with its heartbeat written."""
        passes: dict[str, Callable[[], int]] = {
            "transitioner": self.transition_pass,
            "validator": self.validate_pass,
            "assimilator": self.assimilate_pass,
        }
        if daemon not in passes:
            raise ValueError(f"unknown daemon {daemon!r}; known: {', '.join(DAEMONS)}")
        started = time.monotonic()
        error = None
        try:
            return passes[daemon]()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            owner = f"{socket.gethostname()}:{os.getpid()}"
            record_heartbeat(self.engine, daemon, owner, time.monotonic() - started, error)

    def run_daemon(self, daemon: str, stop: threading.Event, *, interval_s: float = 2.0) -> None:
        """Pass after pass until `stop` is set, sleeping `interval_s` after a pass that found nothing.
        A failing pass is logged and retried after the interval: a daemon outlives a bad row or a
        database that is briefly away, as BOINC's do."""
        while not stop.is_set():
            try:
                busy = self.run_pass(daemon) > 0
            except Exception:
                _log.exception("%s pass failed; retrying in %.0f s", daemon, interval_s)
                busy = False
            if not busy:
                stop.wait(interval_s)

    # -- what the passes need -----------------------------------------------------------------

    @property
    def server_data(self) -> ServerData:
        """The server's own copy of each experiment's data and model (for validation)."""
        with self._lock:
            if self._server is None:
                from mlc.coordinator._serverdata import ServerData

                self._server = ServerData(self.engine)
            return self._server

    def writer(self, experiment: str) -> DatasetWriter:
        """The dataset writer of `experiment`, created or reopened on first use and then kept."""
        server = self.server_data
        with self._lock:
            if experiment not in self._writers:
                self._writers[experiment] = server.dataset_writer(experiment)
            return self._writers[experiment]
