"""The same small preset through the local and the Ray executor on this machine, and where Ray's
overhead goes.

Both train the same networks (the same weights); the local executor in this process, the Ray
executor in tasks of a local Ray instance with as many CPUs as this machine's usable cores; both with
`--threads` training threads (per task, for Ray: 1 by default, so that one Ray task is what the
local executor does). The local executor runs before and after the Ray one (their mean is the baseline: a
busy machine slows both alike). Printed: each wall time and their ratio, then Ray's costs one by
one, measured in the same run:

- start-up: `ray.init` of the local instance, and the first task on each worker process (it imports
  torch and mlc, as every fresh worker on a cluster does);
- per-task scheduling: the round trip of a task that does nothing, on warm workers;
- moving result bytes: the round trip of a task that returns as many bytes as a training task did,
  less the empty one;
- the driver's share (report, validation, assimilation), which the local executor spends too.

The per-task cost (scheduling + bytes) against a task's training time is what decides how large a
Ray task's population must be on a real cluster. The last line is `ratio ray/local: <x>x`.

    python benchmarks/ray_overhead.py                  # mlds-smoke, 2 networks per task, 4 epochs
    python benchmarks/ray_overhead.py --population-size 2   # smaller tasks: more of them
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import mlc.dataset
from mlc._host import usable_cpus
from mlc.coordinator import CoordinatorService
from mlc.executors import LocalExecutor, RayExecutor
from mlc.work import load_preset


def _noop() -> None:
    return None


def _payload(n: int) -> bytes:
    return bytes(n)


def _import_trainer() -> float:
    """What a fresh worker process does before its first training task."""
    started = time.perf_counter()
    import mlc.executors._ray  # noqa: F401  (torch, the trainer, the task's module)

    return time.perf_counter() - started


class _Timed:
    """Wraps the driver's coordinator calls to add up their time and the result bytes reported."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.payloads: list[int] = []
        self._originals = {name: getattr(CoordinatorService, name) for name in ("report", "drain")}

    def __enter__(self) -> _Timed:
        for name, original in self._originals.items():
            setattr(CoordinatorService, name, self._wrap(name, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self._originals.items():
            setattr(CoordinatorService, name, original)

    def _wrap(self, name, original):  # type: ignore[no-untyped-def]
        def timed(service, *args, **kwargs):  # type: ignore[no-untyped-def]
            if name == "report":
                self.payloads.append(len(args[1]))
            started = time.perf_counter()
            try:
                return original(service, *args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return timed


def _round_trip(ray, fn, *args, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of one task's submit-to-result, one at a time."""
    remote = ray.remote(fn).options(max_retries=0)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        ray.get(remote.remote(*args))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="mlds-smoke")
    parser.add_argument("--networks-per-task", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=4)
    parser.add_argument("--population-size", type=int, default=None, help="networks per Ray task [memory]")
    parser.add_argument("--threads", type=int, default=1, help="training threads (per Ray task)")
    parser.add_argument("--repeats", type=int, default=30, help="round trips per latency measurement")
    args = parser.parse_args()
    import ray

    overrides = {"networks_per_task": args.networks_per_task, "train.max_epochs": args.max_epochs}
    config = load_preset(args.preset, overrides)
    cpus = usable_cpus()
    with tempfile.TemporaryDirectory() as tmp:
        with _Timed() as local_driver:
            local = LocalExecutor(Path(tmp) / "local", "cpu", threads=args.threads).run(config)

        started = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
        init_s = time.perf_counter() - started
        warm = ray.remote(_import_trainer).options(max_retries=0)
        started = time.perf_counter()
        imports = ray.get([warm.remote() for _ in range(cpus)])  # one per worker process, in parallel
        warm_s = time.perf_counter() - started

        executor = RayExecutor(Path(tmp) / "ray", "cpu", args.population_size, threads=args.threads)
        n_tasks = 0
        collect = executor._collect

        def counted(*a, **k):  # type: ignore[no-untyped-def]
            nonlocal n_tasks
            n_tasks += 1
            return collect(*a, **k)

        executor._collect = counted  # type: ignore[method-assign]
        with _Timed() as ray_driver:
            remote = executor.run(config)

        noop_s = _round_trip(ray, _noop, repeats=args.repeats)
        per_task_bytes = sum(ray_driver.payloads) // max(n_tasks, 1)
        bytes_s = _round_trip(ray, _payload, per_task_bytes, repeats=args.repeats) - noop_s
        ray.shutdown()
        # the local executor once more, after: a busy machine slows both alike, not just the first
        local_after = LocalExecutor(Path(tmp) / "local-after", "cpu", threads=args.threads).run(config)
        same = np.array_equal(
            mlc.dataset.open(local.dataset_dir).weights(), mlc.dataset.open(remote.dataset_dir).weights()
        )

    n = local.status.n_networks
    print(f"{config.name}: {n} networks, {args.max_epochs} epochs at most; {cpus} CPUs; same weights: {same}")
    local_s = (local.wall_time_s + local_after.wall_time_s) / 2
    print(
        f"local executor: {local_s:7.2f} s  (mean of {local.wall_time_s:.2f} before and "
        f"{local_after.wall_time_s:.2f} after; {local.population_size} networks at once, {local.device})"
    )
    ray_total = init_s + warm_s + remote.wall_time_s
    print(
        f"ray executor:   {ray_total:7.2f} s  = start-up {init_s:.2f} + worker warm-up {warm_s:.2f} + run "
        f"{remote.wall_time_s:.2f}  ({n_tasks} tasks of up to {remote.population_size} networks, "
        f"{executor.n_slots} at once)"
    )
    print("where Ray's overhead goes:")
    print(f"  ray.init of a local instance            {init_s:8.2f} s   once per run")
    print(
        f"  first task per worker (imports)         {warm_s:8.2f} s   once per worker process "
        f"(import alone {max(imports):.2f} s)"
    )
    print(f"  per-task scheduling (empty round trip)  {1000 * noop_s:8.2f} ms  per task")
    print(
        f"  moving result bytes ({per_task_bytes / 1e6:.2f} MB per task)  {1000 * bytes_s:8.2f} ms  per task "
        f"({per_task_bytes / 1e6 / max(bytes_s, 1e-9):.0f} MB/s)"
    )
    print(
        f"  all tasks: {n_tasks} x {1000 * (noop_s + bytes_s):.1f} ms = {n_tasks * (noop_s + bytes_s):.2f} s"
    )
    for name, driver in (("local", local_driver), ("ray", ray_driver)):
        print(
            f"  driver, {name:5s}: report {driver.seconds['report']:.2f} s, validate + assimilate "
            f"{driver.seconds['drain']:.2f} s"
        )
    print(f"run-only ratio ray/local: {remote.wall_time_s / local_s:.2f}x")
    print(f"ratio ray/local: {ray_total / local_s:.2f}x")


if __name__ == "__main__":
    main()
