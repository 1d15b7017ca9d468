"""The Ray executor: `mlc run --executor ray`, for a lab's own (trusted) cluster.

The coordinator stays on the driver (this process), with the workdir's database and dataset. Each Ray
task trains one population of leased work units with the same worker runtime as `mlc worker` and the
local executor, and returns the results' bytes, which the driver reports, validates and assimilates
like those of every other transport. A GPU task asks Ray for one GPU, a CPU task for the cores its
threads use. The driver keeps one task in flight per slot (what the cluster's nodes hold at once),
extends their leases while they run, and gives the units of a lost task (a killed worker process, a
lost node) back to the queue, where each loss counts an attempt as an expired lease does: so a unit
that kills every process training it ends failed instead of being retried for ever.

Lease owners are one per slot (`ray:HOST:WORKDIR`, then `#1`, `#2`, ...), because an owner is handed
its own leased units again: one owner for all tasks would train a unit in two tasks at once. A
re-run takes every earlier lease over into slot 0, which leases its own units first.

Ray is an optional dependency, imported only here and only when this executor is made.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlc.coordinator import CoordinatorService, Experiment
from mlc.errors import ConfigError, MLCError
from mlc.executors._workdir import ProgressSink, WorkdirExecutor
from mlc.work import ExperimentConfig, WorkerRuntime, WorkUnit, WorkUnitSpec, describe_device

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["RAY_INSTALL_HINT", "RayExecutor", "import_ray"]

RAY_INSTALL_HINT = "the Ray executor needs Ray: pip install 'mlc[ray]' (or pip install ray) on every node"

_log = logging.getLogger("mlc.executors")


def import_ray() -> ModuleType:
    """The `ray` module, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_INSTALL_HINT) from None
    return ray


# -- what runs in a Ray task (on any node; takes and returns plain JSON and bytes) ------------------


@functools.cache
def _runtime(device: str, threads: int) -> WorkerRuntime:
    """One runtime per worker process and kind of task: its kernel checks and data outlive a task."""
    runtime = WorkerRuntime(device, threads=threads)
    runtime.prepare()
    return runtime


def _train_population(specs: list[str], states: list[bytes | None], device: str, threads: int) -> list[bytes]:
    """One Ray task: the units (spec JSON, start state) trained as one population; their results'
    bytes in the same order."""
    units = [WorkUnit(WorkUnitSpec.from_json(s), state) for s, state in zip(specs, states, strict=True)]
    return [result.to_bytes() for result in _runtime(device, threads).train(units)]


def _probe(
    config: ExperimentConfig, n_left: int, device: str, threads: int, population_size: int | None
) -> tuple[int, str]:
    """Run as a task with the training tasks' resources: how many networks one task trains at once on
    such a node (the size asked for, checked against its memory), and where, in words."""
    runtime = WorkerRuntime(device, threads=threads, population_size=population_size)
    runtime.prepare()
    size = runtime.capacity(config, n_left)
    return size, f"{describe_device(runtime.device)[1]} ({runtime.kernels(config.model)})"


# -- the driver ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    slot: int
    owner: str
    wu_ids: list[str]


class RayExecutor(WorkdirExecutor):
    """Runs one experiment to completion in `workdir` (on the driver) with Ray tasks.

    `address` is the Ray cluster's ("auto": the one this machine belongs to; "HOST:PORT": its head
    node); None starts a local Ray instance with `local_cpus` CPUs (None: this machine's usable
    cores), and a Ray that the caller already started (`ray.init`) is used as it is. `device` is
    "auto" (a GPU where the cluster has one), "cpu" or "cuda": Ray assigns the GPUs. `threads` are the
    CPU threads (and Ray CPUs) of one task (None: 1); `population_size` the networks one task trains
    (None: what a node's memory holds for them). Leases last `lease_seconds`, extended every third.
    """

    owner_prefix = "ray:"

    def __init__(
        self,
        workdir: Path | str,
        device: torch.device | str = "auto",
        population_size: int | None = None,
        progress: ProgressSink | None = None,
        threads: int | None = None,
        address: str | None = None,
        *,
        local_cpus: int | None = None,
        lease_seconds: float = 600.0,
    ) -> None:
        super().__init__(workdir, progress)
        device = str(device)
        if device not in ("auto", "cpu", "cuda"):
            raise ConfigError(
                f"the Ray executor's device is auto, cpu or cuda (Ray assigns GPUs), got {device!r}"
            )
        threads = 1 if threads is None else threads
        for name, value in (
            ("threads", threads),
            ("population_size", population_size),
            ("local_cpus", local_cpus),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        if not lease_seconds > 0:
            raise ConfigError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        self.ray = import_ray()
        self.device = device
        self.population_size = population_size
        self.threads = threads
        self.address = address
        self.local_cpus = local_cpus
        self.lease_seconds = lease_seconds
        self.n_slots = 0  # tasks in flight at once: set from the cluster's resources by `run`
        self._options: dict[str, Any] = {}
        self._where = ""

    # -- the cluster --------------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[None]:
        ray = self.ray
        started_here = not ray.is_initialized()
        if started_here:
            self._connect()
        try:
            self._plan()
            yield
        finally:
            if started_here:
                ray.shutdown()

    def _connect(self) -> None:
        from mlc._host import usable_cpus

        quiet = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
        if self.address is None:
            self.ray.init(num_cpus=self.local_cpus or usable_cpus(), **quiet)
            return
        try:
            self.ray.init(address=self.address, **quiet)
        except (ConnectionError, RuntimeError) as exc:
            raise ConfigError(
                f"cannot connect to the Ray cluster at {self.address!r}: {exc}. Start its head node with "
                "`ray start --head` and give its address as HOST:PORT (or run on a node of it with auto)"
            ) from exc

    def _plan(self) -> None:
        """The task's device and resources, and how many tasks the cluster's live nodes run at once."""
        nodes = [n["Resources"] for n in self.ray.nodes() if n["Alive"]]
        gpus = [int(r.get("GPU", 0)) for r in nodes]
        cpus = [int(r.get("CPU", 0)) for r in nodes]
        if self.device == "cuda" or (self.device == "auto" and any(gpus)):
            if not any(gpus):
                raise ConfigError("no node of the Ray cluster has a GPU: use --device cpu")
            self._task_device, self.n_slots = "cuda", sum(gpus)
            self._options = {"num_gpus": 1, "num_cpus": self.threads}
        else:
            self._task_device, self.n_slots = "cpu", sum(c // self.threads for c in cpus)
            self._options = {"num_cpus": self.threads}
        if max(cpus, default=0) < self.threads:
            raise ConfigError(
                f"a task of {self.threads} threads asks for {self.threads} CPUs, and no node of the Ray "
                f"cluster has that many (at most {max(cpus, default=0)}): lower --threads"
            )

    def _remote(self, fn: Any) -> Any:
        # retries are the coordinator's (each counts an attempt); Ray's own would hide a unit that
        # kills its worker every time
        return self.ray.remote(fn).options(max_retries=0, **self._options)

    def _population_size(self, config: ExperimentConfig, n_left: int) -> int:
        ref = self._remote(_probe).remote(
            config, n_left, self._task_device, self.threads, self.population_size
        )
        size, where = self._get(ref)
        self._where = f"{where} in Ray tasks, {self.n_slots} at once"
        return size

    def _device_name(self) -> str:
        return self._where

    def _get(self, ref: Any) -> Any:
        """A task's return value; an error the task itself raised is raised here as it was raised
        there (a bad preset says so as it does in a local run)."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, MLCError):
                raise exc.cause from None
            raise

    # -- the loop -----------------------------------------------------------------------------------

    def _train_all(self, service: CoordinatorService, exp: Experiment, size: int, owner: str) -> None:
        train = self._remote(_train_population)
        owners = [owner] + [f"{owner}#{k}" for k in range(1, max(1, self.n_slots))]
        running: dict[Any, _Task] = {}
        extend_every = self.lease_seconds / 3
        next_extend = time.monotonic() + extend_every
        try:
            while True:
                service.transition_pass()
                free = sorted(set(range(len(owners))) - {t.slot for t in running.values()})
                for slot in free:  # slot 0 first: it is handed the leases a re-run took over
                    units = service.lease(owners[slot], size, self.lease_seconds, experiment_id=exp.id)
                    if not units:
                        break
                    specs = [u.spec.to_json() for u in units]
                    ref = train.remote(specs, [u.state for u in units], self._task_device, self.threads)
                    running[ref] = _Task(slot, owners[slot], [u.spec.wu_id for u in units])
                if not running:
                    return
                done, _ = self.ray.wait(list(running), num_returns=1, timeout=extend_every)
                if done:
                    done, _ = self.ray.wait(list(running), num_returns=len(running), timeout=0)
                    for ref in done:
                        self._collect(service, ref, running.pop(ref))
                    self._assimilated(service, exp)
                if time.monotonic() >= next_extend:
                    for task in running.values():
                        service.extend(task.owner, task.wu_ids, self.lease_seconds)
                    next_extend = time.monotonic() + extend_every
        finally:  # an interrupt: the units stay leased to this workdir's runs, and a re-run takes them
            for ref in running:
                self.ray.cancel(ref, force=True)

    def _collect(self, service: CoordinatorService, ref: Any, task: _Task) -> None:
        """Report a finished task's results; give a lost task's units back to the queue."""
        try:
            payloads = self._get(ref)
        except self.ray.exceptions.RayTaskError:
            raise
        except self.ray.exceptions.RayError as exc:  # the worker or its node died: the training is lost
            released = service.release(task.owner, task.wu_ids)
            _log.warning(
                "a Ray task training %s was lost (%s); %d unit(s) go back to the queue",
                ", ".join(task.wu_ids),
                type(exc).__name__,
                len(released),
            )
            return
        for wu_id, payload in zip(task.wu_ids, payloads, strict=True):
            service.report(wu_id, payload, task.owner)
