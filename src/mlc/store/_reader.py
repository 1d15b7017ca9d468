"""Reading a finished dataset: `open_dataset(path)` and the `Dataset` it returns.

Opening is cheap (the manifest only); tables, weights and data are read when first asked for.
Weights are read with safetensors' numpy API, one contiguous block of rows per shard, so loading one
network does not read its whole task. Nothing here unpickles anything.

What is read is checked: the first read of each file (a weight shard, a table, the data) hashes the
whole file against the SHA-256 the manifest lists for it, once per open (a DS-1000-sized dataset,
175 MB of shards, hashes at the disk's or SHA-256's speed: `benchmarks/reader_verify.py` measures it),
and a mismatch is refused naming the file. `open_dataset(path, verify=False)` skips the hashes for
those who know what they read; a file that cannot be parsed is a DatasetError either way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import SafetensorError, safe_open

import mlc.models
from mlc.errors import DatasetError
from mlc.models import Layout, unflatten_into
from mlc.store._files import file_sha256, read_json
from mlc.store._format import (
    CONFIG_FILE,
    DATA_FILE,
    HISTORY_FILE,
    NETWORKS_FILE,
    layout_file,
    layout_sizes,
    load_data,
    read_layout,
    read_manifest,
)
from mlc.tasks import SharedData

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Dataset", "open_dataset", "read_frame", "read_table"]

_MODEL_SETTINGS = ("width", "depth", "activation", "init")  # what a classifier family is built with

_VERIFY_HINT = "run `mlc dataset verify` on the directory (mlc.dataset.verify in Python) to see what is wrong"


def read_table(path: Path) -> pa.Table:
    """A Parquet table, with read failures translated into DatasetError."""
    try:
        return pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - Arrow raises many types for damaged files
        raise DatasetError(f"{path} is unreadable ({type(exc).__name__}: {exc}); {_VERIFY_HINT}") from None


def read_frame(path: Path) -> pd.DataFrame:
    """A Parquet table as a DataFrame; a damaged file (bad UTF-8 in a string column, say, which
    only the conversion notices) is a DatasetError naming it."""
    table = read_table(path)
    try:
        return table.to_pandas()
    except Exception as exc:  # noqa: BLE001 - UnicodeDecodeError, ArrowInvalid, ...
        raise DatasetError(f"{path} is unreadable ({type(exc).__name__}: {exc}); {_VERIFY_HINT}") from None


def open_dataset(path: Path | str, *, verify: bool = True) -> Dataset:
    """Open the finished dataset at `path`; DatasetError naming the problem if it is not one.

    With `verify` (the default) each file is checked against its SHA-256 in the manifest when it is
    first read, and a mismatch is a DatasetError naming the file; `verify=False` reads files as they
    are (for a dataset you are repairing, or when every microsecond counts and the disk is trusted).
    """
    root = Path(path)
    manifest = read_manifest(root)
    if not manifest.get("finalized"):
        raise DatasetError(f"{root} is an unfinished dataset (its writer has not finalized it); "
                           "re-run the `mlc run` that writes it to finish it (in Python: "
                           "DatasetWriter.open(path).finalize())")
    missing = sorted(name for name in manifest.get("files", {}) if not (root / name).is_file())
    if missing:
        raise DatasetError(f"{root} is incomplete: missing {', '.join(missing)}; {_VERIFY_HINT}")
    return Dataset(root, manifest, verify=verify)


class Dataset:
    """A finished dataset directory. Get one from `open_dataset` (`mlc.dataset.open`).

    `manifest` is dataset.json as a dict; `tasks` its tasks in the preset's order; `config` the
    resolved experiment config as plain JSON data (`mlc.work.ExperimentConfig.from_dict` makes it a
    config again); `layout` says where each named tensor lies in a flat weight vector
    (`layout.entries`: name, shape, offset). A dataset of several layouts (a sweep of width or
    depth) has them in `layouts` (layout_id -> Layout), each network's in its `layout_id` column;
    its weights are read one layout at a time (`weights(layout=...)`), as vectors of different
    lengths do not stack.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], *, verify: bool = True) -> None:
        self.path = path
        self.manifest = manifest
        self.verify = verify
        self._checked: set[str] = set()  # files whose hash matched, this open

    def file(self, name: str) -> Path:
        """The path of the dataset's file `name` (e.g. "networks.parquet"), its SHA-256 checked
        against the manifest on the first call (unless opened with verify=False)."""
        path = self.path / name
        if not self.verify or name in self._checked:
            return path
        expected = self.manifest.get("files", {}).get(name)
        try:
            actual = file_sha256(path)
        except OSError as exc:
            raise DatasetError(f"{path} is unreadable ({exc.strerror or exc}); {_VERIFY_HINT}") from None
        if actual != expected:
            raise DatasetError(
                f"{path} does not match its SHA-256 in the manifest (corrupted, changed or swapped); "
                f"{_VERIFY_HINT} (open_dataset(..., verify=False) reads it regardless)")
        self._checked.add(name)
        return path

    def __repr__(self) -> str:
        return (f"Dataset({self.manifest['name']!r}, {self.manifest['n_networks']} networks, "
                f"{len(self.tasks)} tasks, path={str(self.path)!r})")

    def __len__(self) -> int:
        return int(self.manifest["n_networks"])

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.manifest["tasks"])

    @cached_property
    def config(self) -> dict[str, Any]:
        """The resolved experiment config the networks were trained under."""
        return dict(read_json(self.file(CONFIG_FILE)))

    @cached_property
    def layouts(self) -> dict[str, Layout]:
        """layout_id -> Layout of every layout the dataset holds, in the manifest's order (one
        unless a sweep varied width or depth)."""
        out = {}
        for layout_id in layout_sizes(self.manifest):
            name = layout_file(self.manifest, layout_id)
            layout = read_layout(self.file(name))
            if layout.layout_id != layout_id:
                raise DatasetError(f"{self.path / name} is layout {layout.layout_id}, the "
                                   f"manifest says {layout_id}; {_VERIFY_HINT}")
            out[layout_id] = layout
        return out

    @property
    def layout(self) -> Layout:
        """The dataset's one layout; DatasetError naming them where it holds several."""
        if len(self.layouts) > 1:
            raise DatasetError(f"{self.manifest['name']} holds networks of {len(self.layouts)} weight "
                               f"layouts ({', '.join(self.layouts)}): take one from `layouts` (by a "
                               "network's `layout_id` column)")
        return next(iter(self.layouts.values()))

    @cached_property
    def networks(self) -> pd.DataFrame:
        """One row per network, in task order then index order; the columns are
        `mlc.store.NETWORKS_SCHEMA`'s. `final_train_loss` is the mean over the last epoch's
        mini-batches, as the network trained; `final_val_loss` (BCE mean) and `final_val_accuracy`
        (bit accuracy) are the final weights' on the validation sequences; `trojan_accuracy` and
        `clean_accuracy_triggered` (DS1/DS2 only, else null) the server's measurement on held-out
        triggered data (docs/MLDS.md). `hyperparameters` and
        `extra` are JSON objects and `work_units` a JSON list, as strings. The frame is cached and
        shared: copy it before changing it."""
        return read_frame(self.file(NETWORKS_FILE))

    @cached_property
    def history(self) -> pd.DataFrame:
        """One row per network and epoch: net_id, epoch (1-based), train_loss, val_loss,
        val_accuracy."""
        return read_frame(self.file(HISTORY_FILE))

    def weights(self, task: str | None = None, net_ids: Sequence[str] | None = None,
                layout: str | None = None) -> np.ndarray:
        """Flat weight vectors, float32 `[n, n_params]`.

        Rows follow the `networks` table (restricted to `task` and to the layout_id `layout` if
        given); with `net_ids`, they follow `net_ids` instead, one row per id given. In a dataset of
        several layouts the rows must share one (pass `layout`, or net_ids of one layout): vectors
        of different lengths do not stack, and a DatasetError names the layouts found.
        """
        rows = self._select(task, net_ids)
        sizes = layout_sizes(self.manifest)
        if layout is not None:
            if layout not in sizes:
                raise DatasetError(f"unknown layout {layout!r}; this dataset's are {', '.join(sizes)}")
            if net_ids is None:
                rows = rows[rows["layout_id"] == layout]
        found = rows["layout_id"].value_counts(sort=False)
        if len(found) > 1 or (layout is not None and len(found) and found.index[0] != layout):
            counts = ", ".join(f"{n} of {layout_id}" for layout_id, n in found.items())
            raise DatasetError(f"the networks asked for come in several weight layouts ({counts}), "
                               "which do not stack into one matrix: ask for one layout at a time "
                               "(weights(..., layout=layout_id); `layouts` lists them)")
        width = sizes[found.index[0]] if len(found) else sizes[layout or next(iter(sizes))]
        out = np.empty((len(rows), width), dtype=np.float32)
        shard_rows = rows["shard_row"].to_numpy(dtype=np.int64)
        for shard, positions in rows.groupby("shard", sort=True).indices.items():
            out[positions] = self._read_rows(str(shard), shard_rows[positions], width)
        return out

    def load_model(self, net_id: str) -> nn.Module:
        """The reference module of network `net_id` with its stored weights, in eval mode (built
        with the model settings it recorded, e.g. a sweep's activation)."""
        row = self._select(None, [net_id]).iloc[0]
        recorded = json.loads(row["hyperparameters"])
        settings = {k: recorded[k] for k in _MODEL_SETTINGS if recorded.get(k) is not None}
        module = mlc.models.get(self.manifest["model"], settings=settings)
        unflatten_into(module, self.weights(net_ids=[net_id])[0])
        return module.eval()

    def data(self) -> SharedData:
        """The shared training and validation data the networks were trained on."""
        return load_data(self.file(DATA_FILE), self.manifest["data"], list(self.tasks))

    def _select(self, task: str | None, net_ids: Sequence[str] | None) -> pd.DataFrame:
        rows = self.networks
        if task is not None:
            if task not in self.tasks:
                raise DatasetError(f"unknown task {task!r}; this dataset's tasks are "
                                   f"{', '.join(self.tasks)}")
            rows = rows[rows["task"] == task]
        if net_ids is None:
            return rows
        if isinstance(net_ids, str):
            raise TypeError("net_ids takes a sequence of ids; for one network pass [net_id]")
        wanted = list(net_ids)
        by_id = rows.set_index("net_id")
        missing = [i for i in wanted if i not in by_id.index]
        if missing:
            where = f" task {task}" if task is not None else f" {self.manifest['name']}"
            raise DatasetError(f"no network {', '.join(map(repr, missing[:5]))} in{where}"
                               + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""))
        return by_id.loc[wanted].reset_index()

    def _read_rows(self, shard: str, rows: np.ndarray, n_params: int) -> np.ndarray:
        """Rows `rows` of a shard's `weights` tensor, reading only the block that spans them."""
        path = self.file(shard)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        try:
            with safe_open(path, framework="np") as f:
                tensor = f.get_slice("weights")
                shape = tuple(tensor.get_shape())
                if len(shape) != 2 or shape[1] != n_params or hi > shape[0]:
                    raise DatasetError(f"{path} holds weights of shape {list(shape)}, which do not "
                                       f"cover rows up to {hi - 1}; {_VERIFY_HINT}")
                block = tensor[lo:hi]
        except (OSError, SafetensorError) as exc:
            raise DatasetError(f"{path} is unreadable ({exc}); {_VERIFY_HINT}") from None
        return np.asarray(block, dtype=np.float32)[rows - lo]
