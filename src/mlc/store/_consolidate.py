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
    NETWORKS_FILE,
    NETWORKS_SCHEMA,
    README_FILE,
    WEIGHTS_DIR,
    dataset_shard,
    layout_file,
    layout_sizes,
    read_layout,
    tensors_to_bytes,
    write_manifest,
)
from mlc.store._readme import render_readme

__all__ = ["TaskBatch", "check_inputs", "consolidate", "input_files", "now_utc"]


@dataclass(frozen=True)
class TaskBatch:
    """One task's networks in their final order.

    `networks`: rows of NETWORKS_SCHEMA without `shard`/`shard_row`; `history`: HISTORY_SCHEMA
    rows of those networks; `weights`: layout_id -> float32 [n_l, n_params of that layout], row i
    belonging to the i-th networks row of that layout (one entry unless a sweep varied width or
    depth).
    """

    task: str
    networks: pa.Table
    history: pa.Table
    weights: dict[str, np.ndarray]


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


def _write_shards(root: Path, batch: TaskBatch, manifest: dict[str, Any]) -> pa.Table:
    """Write the batch's weight shard(s), one per layout; return its table rows with `shard` and
    `shard_row` set (table order kept: a network's row in its layout's shard is its rank among them)."""
    sizes = layout_sizes(manifest)
    layout_ids = np.array(batch.networks["layout_id"].to_pylist(), dtype=object)
    shards = np.empty(len(layout_ids), dtype=object)
    shard_rows = np.zeros(len(layout_ids), dtype=np.int64)
    if set(layout_ids) != set(batch.weights) or not set(batch.weights) <= set(sizes):
        raise DatasetError(f"task {batch.task}: networks of layouts {sorted(set(layout_ids))}, weights "
                           f"of {sorted(batch.weights)}, the dataset's {list(sizes)}")
    for layout_id, weights in batch.weights.items():
        rows = np.flatnonzero(layout_ids == layout_id)
        if weights.shape != (len(rows), sizes[layout_id]) or weights.dtype != np.float32:
            raise DatasetError(f"task {batch.task}: weights {weights.dtype} {list(weights.shape)} do not "
                               f"match {len(rows)} rows of {sizes[layout_id]} float32 ({layout_id})")
        shard = dataset_shard(manifest, batch.task, layout_id)
        (root / shard).parent.mkdir(parents=True, exist_ok=True)
        data = tensors_to_bytes({"weights": np.ascontiguousarray(weights)},
                                {"task": batch.task, "layout_id": layout_id})
        write_atomic(root / shard, data)
        shards[rows], shard_rows[rows] = shard, np.arange(len(rows), dtype=np.int64)
    return (batch.networks
            .append_column("shard", pa.array(shards.tolist(), type=pa.string()))
            .append_column("shard_row", pa.array(shard_rows)))


def input_files(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The files written before the networks and hashed then: config.json, the layout file(s) and
    data.safetensors."""
    return (CONFIG_FILE, *(layout_file(manifest, i) for i in layout_sizes(manifest)), DATA_FILE)


def check_inputs(root: Path, inputs: dict[str, str], names: Iterable[str]) -> None:
    """Raise DatasetError naming each of the input files `names` (config.json, the layouts,
    data.safetensors) that no longer has the SHA-256 `inputs` recorded when it was written (a release
    must not bless a changed file)."""
    changed = [name for name in names
               if not (root / name).is_file() or file_sha256(root / name) != inputs.get(name)]
    if changed:
        raise DatasetError(f"{', '.join(str(root / n) for n in changed)} missing or changed since "
                           "written (SHA-256 differs from the one recorded then): the dataset is "
                           "damaged; restore the file(s) from a copy or recreate the dataset")


def consolidate(root: Path, manifest: dict[str, Any], config: dict[str, Any],
                batches: Iterable[TaskBatch], inputs: dict[str, str]) -> dict[str, Any]:
    """Write weight shards, networks.parquet, history.parquet, README.md and the final manifest.

    `manifest` is the draft (identity, data, layouts); config.json, the layout file(s) and
    data.safetensors must already be in `root`, with the SHA-256s `inputs` recorded when they were
    written (checked here). Returns the final manifest, which is written last: until it lands, the
    directory does not claim to be finished.
    """
    names = input_files(manifest)
    check_inputs(root, inputs, names)
    (root / WEIGHTS_DIR).mkdir(exist_ok=True)
    tables, histories = [], []
    for batch in batches:
        if batch.networks.num_rows:
            tables.append(_write_shards(root, batch, manifest))
            histories.append(batch.history)
    networks = pa.concat_tables(tables) if tables else NETWORKS_SCHEMA.empty_table()
    _write_parquet(root / NETWORKS_FILE, networks)
    _write_parquet(root / HISTORY_FILE,
                   pa.concat_tables(histories) if histories else HISTORY_SCHEMA.empty_table())
    shards = pc.unique(networks["shard"]).to_pylist()

    final = {**manifest, "finalized": now_utc(), "n_networks": networks.num_rows,
             "counts": _count_networks(networks, manifest["tasks"])}
    layouts = [read_layout(root / layout_file(manifest, i)) for i in layout_sizes(manifest)]
    readme = render_readme(final, config, layouts, networks)
    write_atomic(root / README_FILE, readme.encode())
    written = [NETWORKS_FILE, HISTORY_FILE, README_FILE, *shards]
    final["files"] = dict(sorted({**{name: inputs[name] for name in names},
                                  **{name: file_sha256(root / name) for name in written}}.items()))
    write_manifest(root, final)
    return final
