"""Consolidation: turn per-task batches of networks into the finished files of a dataset directory.

Both the writer (from its staged networks) and export (from a subset of a finished dataset) end
here, so a dataset and a release subset of it have exactly the same shape. Batches arrive one task
at a time so that only one task's weight matrix is in memory at once (10,000 networks are 175 MB).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlc.errors import DatasetError
from mlc.store._files import atomic_path, file_sha256, write_atomic
from mlc.store._format import (
    CONFIG_FILE,
    DATA_FILE,
    HISTORY_FILE,
    HISTORY_SCHEMA,
    LAYOUT_FILE,
    NETWORKS_FILE,
    NETWORKS_SCHEMA,
    README_FILE,
    WEIGHTS_DIR,
    read_layout,
    shard_name,
    tensors_to_bytes,
    write_manifest,
)
from mlc.store._readme import render_readme

__all__ = ["INPUT_FILES", "TaskBatch", "check_inputs", "consolidate", "now_utc"]


@dataclass(frozen=True)
class TaskBatch:
    """One task's networks in their final order.

    `networks`: rows of NETWORKS_SCHEMA without `shard`/`shard_row`; `history`: HISTORY_SCHEMA
    rows of those networks; `weights`: float32 [n, n_params], row i belonging to networks row i.
    """

    task: str
    networks: pa.Table
    history: pa.Table
    weights: np.ndarray


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _count_networks(networks: pa.Table, tasks: Iterable[str]) -> dict[str, dict[str, int]]:
    """{task: {"networks": n, "converged": n}} for every task, zero where a task has none."""
    counts = {}
    for task in tasks:
        rows = networks.filter(pc.equal(networks["task"], task))
        counts[task] = {"networks": rows.num_rows,
                        "converged": int(pc.sum(rows["converged"]).as_py() or 0)}
    return counts


def _write_parquet(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _write_shard(root: Path, batch: TaskBatch, layout_id: str, n_params: int) -> pa.Table:
    """Write the batch's weight shard; return its table rows with `shard` and `shard_row` set."""
    n = batch.networks.num_rows
    if batch.weights.shape != (n, n_params) or batch.weights.dtype != np.float32:
        raise DatasetError(f"task {batch.task}: weights {batch.weights.dtype} "
                           f"{list(batch.weights.shape)} do not match {n} rows of {n_params} "
                           "float32")
    shard = shard_name(batch.task)
    data = tensors_to_bytes({"weights": np.ascontiguousarray(batch.weights)},
                            {"task": batch.task, "layout_id": layout_id})
    write_atomic(root / shard, data)
    return (batch.networks
            .append_column("shard", pa.array([shard] * n, type=pa.string()))
            .append_column("shard_row", pa.array(np.arange(n, dtype=np.int64))))


INPUT_FILES = (CONFIG_FILE, LAYOUT_FILE, DATA_FILE)  # written before the networks, hashed then


def check_inputs(root: Path, inputs: dict[str, str]) -> None:
    """Raise DatasetError naming each of config.json, layout.json and data.safetensors that no longer
    has the SHA-256 `inputs` recorded when it was written (a release must not bless a changed file)."""
    changed = [name for name in INPUT_FILES
               if not (root / name).is_file() or file_sha256(root / name) != inputs.get(name)]
    if changed:
        raise DatasetError(f"{', '.join(str(root / n) for n in changed)} missing or changed since "
                           "written (SHA-256 differs from the one recorded then): the dataset is "
                           "damaged; restore the file(s) from a copy or recreate the dataset")


def consolidate(root: Path, manifest: dict[str, Any], config: dict[str, Any],
                batches: Iterable[TaskBatch], inputs: dict[str, str]) -> dict[str, Any]:
    """Write weight shards, networks.parquet, history.parquet, README.md and the final manifest.

    `manifest` is the draft (identity, data, layout); config.json, layout.json and data.safetensors
    must already be in `root`, with the SHA-256s `inputs` recorded when they were written (checked
    here). Returns the final manifest, which is written last: until it lands, the directory does not
    claim to be finished.
    """
    check_inputs(root, inputs)
    (root / WEIGHTS_DIR).mkdir(exist_ok=True)
    tables, histories = [], []
    for batch in batches:
        if batch.networks.num_rows:
            tables.append(_write_shard(root, batch, manifest["layout_id"], manifest["n_params"]))
            histories.append(batch.history)
    networks = pa.concat_tables(tables) if tables else NETWORKS_SCHEMA.empty_table()
    _write_parquet(root / NETWORKS_FILE, networks)
    _write_parquet(root / HISTORY_FILE,
                   pa.concat_tables(histories) if histories else HISTORY_SCHEMA.empty_table())
    shards = pc.unique(networks["shard"]).to_pylist()

    final = {**manifest, "finalized": now_utc(), "n_networks": networks.num_rows,
             "counts": _count_networks(networks, manifest["tasks"])}
    readme = render_readme(final, config, read_layout(root / LAYOUT_FILE), networks)
    write_atomic(root / README_FILE, readme.encode())
    written = [NETWORKS_FILE, HISTORY_FILE, README_FILE, *shards]
    final["files"] = dict(sorted({**{name: inputs[name] for name in INPUT_FILES},
                                  **{name: file_sha256(root / name) for name in written}}.items()))
    write_manifest(root, final)
    return final
