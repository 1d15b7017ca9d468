"""The worker's loop: register once, lease what the device holds, train it as one population while
extending the leases, keep the results on disk, and upload them with retries.

What survives a kill at any instant: the registration, the batch in training (resumed from the
runtime's checkpoint, which names the exact batch), and every finished result (in the outbox until
the server has it). What a server outage costs: nothing but time; results wait in the outbox and the
client backs off with jitter until the server answers again.
"""

from __future__ import annotations

import base64
import logging
import platform
import socket
import threading
from dataclasses import dataclass

import filelock

import mlc
from mlc.errors import ConfigError, MLCError, ResultRejected, StoreBusy
from mlc.protocol import HostDescription, LeasedUnit
from mlc.work import TrainingStopped, WorkerRuntime, WorkUnit, WorkUnitSpec
from mlc.worker._client import HostTokenRefused, ServerClient, ServerUnreachable
from mlc.worker._progress import WorkerProgress
from mlc.worker._state import WorkerFolder

__all__ = ["Worker", "WorkerSummary"]

_log = logging.getLogger("mlc.worker")


@dataclass
class WorkerSummary:
    units_trained: int = 0
    results_uploaded: int = 0
    results_refused: int = 0


class Worker:
    """One volunteer worker: `client` to its server, `runtime` to train, `folder` for its state.

    `exit_when_idle` ends `run` once the server says no work is left or coming; `max_batches` (tests)
    ends it after that many trained batches; `name` is the host name the server shows;
    `account_key` links the host to a volunteer's account (at registration, or once at start for a
    host registered before), so its credit counts for the volunteer.
    """

    def __init__(
        self,
        client: ServerClient,
        runtime: WorkerRuntime,
        folder: WorkerFolder,
        *,
        exit_when_idle: bool = False,
        name: str | None = None,
        test_queue: bool = False,
        progress: WorkerProgress | None = None,
        account_key: str | None = None,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.folder = folder
        self.exit_when_idle = exit_when_idle
        self.name = name or socket.gethostname()
        self.test_queue = test_queue
        self.progress = progress or WorkerProgress()
        self.account_key = account_key
        self._linked = account_key is None  # linked to its account (or no account to link to)
        self.summary = WorkerSummary()
        self._capacity: dict[tuple[str, int, int, int], int] = {}
        self._lease_seconds = 3600.0  # the server's, from its last answer
        self._retry_after = 10.0

    def run(self, stop: threading.Event | None = None) -> WorkerSummary:
        """Work until `stop` is set, or (with exit_when_idle) until the server has nothing left."""
        stop = stop or threading.Event()
        self.folder.create()
        try:
            lock = filelock.FileLock(self.folder.lock_file).acquire(timeout=2)
        except filelock.Timeout:
            raise StoreBusy(
                f"another mlc worker uses {self.folder.root}; give this one another --workdir"
            ) from None
        with lock:
            self.runtime.prepare()
            while not stop.is_set():
                try:
                    if not self._step(stop):
                        break
                except ServerUnreachable as exc:  # results stay on disk; try again later
                    _log.warning("%s; trying again in %.0f s", exc, self._retry_after)
                    stop.wait(self._retry_after)
                except HostTokenRefused as exc:
                    _log.warning("%s: registering again", exc)
                    self.folder.forget_registration()
                    self.folder.clear_batch()
        return self.summary

    def _step(self, stop: threading.Event) -> bool:
        """Upload what waits, then lease and train one batch (or wait); False: nothing is left."""
        self._register()
        self._upload_pending()
        units, finished, retry_after = self._next_batch()
        if units:
            self._train(units)
            self._upload_pending()
            return True
        if finished and self.exit_when_idle:
            return False
        self.progress.idle(retry_after)
        stop.wait(retry_after)
        return True

    # -- registration and the host's description ------------------------------------------------

    def _description(self) -> HostDescription:
        import torch

        from mlc._host import available_memory, usable_cpus
        from mlc.work import describe_device, kernel_class

        kind, name = describe_device(self.runtime.device)
        return HostDescription(
            device="cuda" if kind == "cuda" else "cpu",
            device_name=name[:200],
            cpus=usable_cpus(),
            memory_bytes=available_memory(),
            platform=platform.platform()[:200],
            torch_version=torch.__version__,
            mlc_version=mlc.__version__,
            kernels=self.runtime.kernel_paths("mlds-gru"),
            kernel_class=kernel_class(self.runtime.device, self.runtime.kernels("mlds-gru")),
        )

    def _register(self) -> None:
        saved = self.folder.registration(self.client.url)
        if saved is None:
            answer = self.client.register(
                self.name, self._description(), self.test_queue, self.account_key
            )
            self.folder.save_registration(self.client.url, answer.host_id, answer.token)
            saved = {"host_id": answer.host_id, "token": answer.token}
            self._linked = True
            _log.info("registered with %s as host %d", self.client.url, answer.host_id)
        self.client.token = saved["token"]
        if not self._linked and self.account_key is not None:
            linked = self.client.link_account(self.account_key)
            self._linked = True
            _log.info("host %d now credits volunteer %s", linked.host_id, linked.account_name)

    # -- leasing --------------------------------------------------------------------------------

    def _next_batch(self) -> tuple[list[WorkUnit], bool, float]:
        """The units to train next: the saved batch if the server still leases it to this host (a
        restarted worker), else as many new units as the device holds."""
        saved = self.folder.batch()
        if saved:
            held = set(self.client.extend([u["wu_id"] for u in saved]).held)
            kept = [_unit(LeasedUnit(**u)) for u in saved if u["wu_id"] in held]
            if kept:
                _log.info("resuming %d leased unit(s) from before the restart", len(kept))
                return kept, False, 0.0
            self.folder.clear_batch()
        first = self.client.lease(self._lease_size(None), self._description())
        self._lease_seconds, self._retry_after = first.lease_seconds, first.retry_after_s
        leased = list(first.units)
        if leased:
            spec = WorkUnitSpec.from_json(leased[0].spec_json)
            held = sum(len(WorkUnitSpec.from_json(u.spec_json).members) for u in leased)
            if self._lease_size(spec) > held:  # the server leases this host's own units again first
                ids = {u.wu_id for u in leased}
                leased += [u for u in self.client.lease(self._lease_size(spec)).units if u.wu_id not in ids]
            self.folder.save_batch([u.model_dump() for u in leased])
        return [_unit(u) for u in leased], first.finished, first.retry_after_s

    def _lease_size(self, spec: WorkUnitSpec | None) -> int:
        """Networks to ask for: what the device holds for work like `spec`, remembered per kind of
        work; before any spec is seen, one unit's worth (the server hands out at least one unit)."""
        if spec is None:
            return next(iter(self._capacity.values()), 1)
        key = (spec.model, spec.train.batch_size, spec.data.length, spec.data.n_train)
        if key not in self._capacity:
            self._capacity[key] = self.runtime.capacity(spec)
        return self._capacity[key]

    # -- training -------------------------------------------------------------------------------

    def _train(self, units: list[WorkUnit]) -> None:
        ids = [u.spec.wu_id for u in units]
        done, lost = threading.Event(), threading.Event()
        threading.Thread(target=self._extend_until, args=(ids, done, lost), daemon=True).start()
        self.progress.batch_started(units)
        try:
            results = self.runtime.train(units, on_epoch=self.progress.epoch, should_stop=lost.is_set)
        except TrainingStopped:
            _log.warning("a lease of this batch went to another host; the batch is dropped")
            self.runtime.forget(units)
            self.folder.clear_batch()
            return
        finally:
            done.set()
        for result in results:
            self.folder.put_result(result.wu_id, result.to_bytes())
        self.runtime.forget(units)  # the results are on disk: the checkpoint is not needed any more
        self.folder.clear_batch()
        self.summary.units_trained += len(units)
        self.progress.batch_done(units)

    def _extend_until(self, ids: list[str], done: threading.Event, lost: threading.Event) -> None:
        """Extend the batch's leases every third of the lease time until `done`; set `lost` when one
        of them is no longer this host's (it expired and went elsewhere: training it is wasted)."""
        while not done.wait(max(1.0, self._lease_seconds / 3)):
            try:
                held = set(self.client.extend(ids).held)
            except MLCError as exc:  # a server that is away: the deadline is still far, train on
                _log.warning("could not extend the leases: %s", exc)
                continue
            if set(ids) - held:
                lost.set()
                return

    # -- uploading ------------------------------------------------------------------------------

    def _upload_pending(self) -> None:
        """Upload every result on disk, oldest first; a result the server refuses is dropped with
        its reason logged (it would be refused again), one the server has is removed."""
        pending = self.folder.pending_results()
        for path in pending:
            wu_id = path.stem
            try:
                answer = self.client.upload(wu_id, path.read_bytes())
            except (ResultRejected, ConfigError) as exc:
                _log.error("the server refused the result of %s: %s", wu_id, exc)
                self.summary.results_refused += 1
            else:
                self.summary.results_uploaded += 1
                _log.info("uploaded %s (%s)", wu_id, answer.outcome)
            path.unlink()
        if pending:
            self.progress.uploaded(self.summary.results_uploaded)


def _unit(leased: LeasedUnit) -> WorkUnit:
    spec = WorkUnitSpec.from_json(leased.spec_json)
    if spec.wu_id != leased.wu_id:
        raise ConfigError(f"the server sent unit {leased.wu_id} with the spec of {spec.wu_id}")
    state = base64.b64decode(leased.state_b64) if leased.state_b64 is not None else None
    return WorkUnit(spec, state)
