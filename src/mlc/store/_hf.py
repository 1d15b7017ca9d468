"""Hugging Face export: a dataset as a folder that `datasets.load_dataset("parquet", data_dir=...)`
reads as is, with a dataset card.

    <out>/
      data/train-00000-of-00001.parquet   one row per network: networks.parquet's columns (less the
                                          shard bookkeeping), its flat `weights` (float32 list), and
                                          its per-epoch `train_loss`, `val_loss`, `val_accuracy` lists
      README.md                           the dataset card: YAML header (configs, tags) and the source
                                          dataset's own README below it
      layout.json                         where each tensor lies in a flat weight vector
                                          (several layouts: layouts/<hash>.json, one per layout,
                                          and `weights` a list of each row's own length; the
                                          `layout_id` column says which layout a row has)

The source is verified first, so a corrupted dataset is refused rather than published. Nothing here
needs the `datasets` package; it only writes Parquet that package reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlc.errors import DatasetError
from mlc.store._files import new_build_dir, write_atomic
from mlc.store._format import README_FILE, dataset_containing, layout_file, layout_sizes
from mlc.store._reader import Dataset, open_dataset
from mlc.store._verify import verify_dataset

__all__ = ["export_hf"]

DATA_FILE = "data/train-00000-of-00001.parquet"
_HISTORY = ("train_loss", "val_loss", "val_accuracy")


def export_hf(source: Path | str, out: Path | str, per_task: int | None = None) -> Path:
    """Write `source`'s networks (all, or the first `per_task` of each task by index) to the folder
    `out` in the layout above; returns `out`. `out` must not exist yet (nothing is overwritten)."""
    source, out = Path(source), Path(out)
    if out.exists():
        raise DatasetError(f"{out} exists; export into a new folder")
    if dataset_containing(out.parent) is not None:
        raise DatasetError(f"{out} lies inside a dataset; export outside it")
    report = verify_dataset(source)
    if not report.ok:
        raise DatasetError(f"{source} failed verification ({report.problems[0]}); it is not exported")
    ds = open_dataset(source)
    table = _rows(ds, per_task)
    build = new_build_dir(out, "hf")
    (build / "data").mkdir()
    pq.write_table(table, build / DATA_FILE)
    for layout_id in layout_sizes(ds.manifest):
        name = layout_file(ds.manifest, layout_id)
        (build / name).parent.mkdir(exist_ok=True)
        shutil.copyfile(ds.file(name), build / name)
    readme = (source / README_FILE).read_text()
    write_atomic(build / README_FILE, (_card_header(ds.manifest, table.num_rows) + readme).encode())
    build.rename(out)
    return out


def _rows(ds: Dataset, per_task: int | None) -> pa.Table:
    """The networks as one table with their weights and histories as list columns."""
    nets = ds.networks.sort_values(["task", "index"])
    if per_task is not None:
        nets = nets.groupby("task", sort=False).head(per_task)
    nets = nets.drop(columns=["shard", "shard_row"])
    history = ds.history.set_index("net_id")
    table = pa.Table.from_pandas(nets, preserve_index=False)
    table = table.append_column("weights", _weights_column(ds, nets))
    for name in _HISTORY:
        per_net = [history.loc[[net_id], name].to_numpy(np.float32) for net_id in nets["net_id"]]
        table = table.append_column(name, pa.array(per_net, type=pa.list_(pa.float32())))
    return table


def _weights_column(ds: Dataset, nets: pd.DataFrame) -> pa.Array:
    """Each row's flat weights: fixed-size lists for one layout, as ever; for several, lists of
    each row's own length (`datasets` reads both), filled one layout at a time."""
    sizes = layout_sizes(ds.manifest)
    if len(sizes) == 1:
        weights = ds.weights(net_ids=list(nets["net_id"]))  # [n, n_params]
        flat = pa.array(np.ascontiguousarray(weights, dtype=np.float32).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, next(iter(sizes.values())))
    rows: list[np.ndarray] = [np.empty(0, np.float32)] * len(nets)
    layout_ids = nets["layout_id"].to_numpy()
    for layout_id in sizes:
        where = np.flatnonzero(layout_ids == layout_id)
        if len(where):
            block = ds.weights(net_ids=list(nets["net_id"].iloc[where]))  # [n_l, n_params_l]
            for position, vector in zip(where, block, strict=True):
                rows[position] = vector
    return pa.array(rows, type=pa.list_(pa.float32()))


def _card_header(manifest: dict[str, object], n_rows: int) -> str:
    """The dataset card's YAML front matter: the data files, and tags a hub search finds."""
    size = "n<1K" if n_rows < 1000 else "1K<n<10K" if n_rows < 10000 else "10K<n<100K"
    return (
        "---\n"
        "configs:\n"
        "- config_name: default\n"
        "  data_files:\n"
        "  - split: train\n"
        f"    path: {DATA_FILE}\n"
        "tags:\n"
        "- model-zoo\n"
        "- neural-network-weights\n"
        "- mlc\n"
        f"- {manifest['model']}\n"
        "size_categories:\n"
        f"- {size}\n"
        "---\n\n"
        f"Exported by `mlc dataset export --format hf`: {n_rows} networks of `{manifest['name']}`, one "
        f"row each, with its settings, metrics, flat `weights` ({_layouts_said(manifest)}) and "
        "per-epoch history (`train_loss`, `val_loss`, `val_accuracy`). Load it with "
        '`datasets.load_dataset("parquet", data_dir=<this folder>)`.\n\n'
    )


def _layouts_said(manifest: dict[str, Any]) -> str:
    sizes = layout_sizes(manifest)
    if len(sizes) == 1:
        return "layout.json"
    each = ", ".join(f"`{layout_id}` ({n} values)" for layout_id, n in sizes.items())
    return (f"of {len(sizes)} layouts, each row's named by its `layout_id` column and laid out as "
            f"`layouts/<hash>.json` says: {each}")
