"""What the reader's hash check costs: reading a DS-1000-sized dataset with and without it, same run.

A DS-1000 dataset is 10 tasks x 1,000 networks of 4,364 float32 (175 MB of weight shards). It is
written once to a temporary folder (consolidated directly, without staging 10,000 files), then
opened and read whole (every shard's weights, the networks table) `--repeats` times each way,
interleaved so that a noisy machine slows both alike; the page cache is warm for both after the
first read, so this is the CPU cost of SHA-256 against numpy's copy, the worst case for the check.
Opening and reading one network (the other common use) pays the hash of its shard once per open.
The last line is `ratio verify=True vs verify=False: <x>x`.

    python benchmarks/reader_verify.py                  # about a minute on 2 cores
    python benchmarks/reader_verify.py --networks 100   # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import mlc.models
from mlc.store import DatasetWriter, open_dataset
from mlc.store._consolidate import consolidate, input_files
from mlc.store._format import read_manifest
from mlc.store._staging import StagedNetwork, to_batch
from mlc.tasks import DataSpec, get, make_shared_data, names


def _staged(task: str, index: int, layout_id: str, n_params: int, rng: np.random.Generator) -> StagedNetwork:
    meta = {"net_id": f"{task}-{index:06d}", "dataset": "bench", "task": task, "index": index,
            "net_seed": index, "data_seed": 1, "model": "mlds-gru", "layout_id": layout_id,
            "hyperparameters": {"lr": 0.001}, "converged": True, "wall_time_s": 1.0,
            "work_units": [], "device_kind": "cpu", "device_name": "bench", "torch_version": "",
            "platform": "", "host_id": "", "extra": {}}
    history = rng.random(3, dtype=np.float32)
    return StagedNetwork(meta, {"weights": rng.standard_normal(n_params, dtype=np.float32),
                                "train_loss": history, "val_loss": history, "val_accuracy": history})


def build(root: Path, n_tasks: int, per_task: int) -> Path:
    tasks = list(names())[:n_tasks]
    data = make_shared_data(DataSpec(seed=1, n_train=16, n_val=8, length=10), [get(t) for t in tasks])
    writer = DatasetWriter.create(root, name="bench", preset="bench", config={}, model="mlds-gru", data=data)
    layout = mlc.models.layout("mlds-gru")
    rng = np.random.default_rng(0)
    batches = (to_batch(t, [_staged(t, i, layout.layout_id, layout.n_params, rng) for i in range(per_task)])
               for t in tasks)
    draft = read_manifest(root)
    consolidate(root, draft, {}, batches, {name: draft["inputs"][name] for name in input_files(draft)})
    return writer.path


def read_all(root: Path, verify: bool) -> float:
    started = time.perf_counter()
    ds = open_dataset(root, verify=verify)
    for task in ds.tasks:
        ds.weights(task=task)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--networks", type=int, default=1000, help="per task (DS-1000: 1000)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = build(Path(tmp) / "ds", args.tasks, args.networks)
        size = sum(p.stat().st_size for p in (root / "weights").iterdir())
        print(f"{args.tasks} tasks x {args.networks} networks: {size / 1e6:.0f} MB of shards")
        read_all(root, False)  # warm the page cache for both sides
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for verify in (False, True):
                times[verify].append(read_all(root, verify))
    plain, checked = statistics.median(times[False]), statistics.median(times[True])
    print(f"open + read every weight, verify=False: {plain:.3f} s (median of {args.repeats})")
    print(f"open + read every weight, verify=True:  {checked:.3f} s (SHA-256 of every file read)")
    print(f"ratio verify=True vs verify=False: {checked / plain:.2f}x")


if __name__ == "__main__":
    main()
