"""The analysis input: datasets as the store opens them, merged into one table and one weight matrix.

The analysis codes against the small protocols below rather than the store's classes, so tests can hand
it in-memory stand-ins and the store can change its internals freely. Merging caps the networks per
(task, device kind) *before* any weights are read, because a full MLDS dataset (10 tasks x 10,000
networks) would not fit in memory as one matrix, and every question the report asks uses at most
`max_per_class` networks per class anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mlc.errors import ConfigError, DatasetError

__all__ = [
    "HISTORY_COLUMNS",
    "REQUIRED_COLUMNS",
    "DatasetLike",
    "LayoutEntryLike",
    "LayoutLike",
    "MergedData",
    "load_datasets",
    "merge_datasets",
    "open_datasets",
]

HISTORY_COLUMNS = ("dataset", "net_id", "task", "epoch", "train_loss", "val_loss", "val_accuracy")
REQUIRED_COLUMNS = (
    "net_id", "task", "index", "converged", "final_train_loss", "final_val_loss", "device_kind",
    "weights_sha256",
)


class LayoutEntryLike(Protocol):
    """One tensor of the flat weight vector (`mlc.models.LayoutEntry` satisfies it)."""

    @property
    def name(self) -> str: ...

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def offset(self) -> int: ...


class LayoutLike(Protocol):
    """Where each tensor lies in the flat weight vector (`mlc.models.Layout` satisfies it)."""

    @property
    def entries(self) -> Sequence[LayoutEntryLike]: ...

    @property
    def layout_id(self) -> str: ...


class DatasetLike(Protocol):
    """What the analysis needs of a dataset (`mlc.dataset.open` returns one). `layouts` maps each
    layout_id to its layout (one, unless a sweep varied width or depth; then the networks table's
    `layout_id` column says whose is whose)."""

    @property
    def networks(self) -> pd.DataFrame: ...

    @property
    def layouts(self) -> Mapping[str, LayoutLike]: ...

    @property
    def manifest(self) -> Mapping[str, Any]: ...

    @property
    def history(self) -> pd.DataFrame: ...

    def weights(self, task: str | None = None,
                net_ids: Sequence[str] | None = None) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class MergedData:
    """Networks of one or more datasets, ready for analysis.

    `networks` has one row per network analysed (a `dataset` column added, index 0..n-1; its
    `layout_id` column names each network's weight layout); `layouts` maps each layout_id present
    to its layout, and `blocks` to the float32 weights `[n_l, n_params_l]` of that layout's
    networks, in `networks` order; `summary` counts, per dataset, task and device kind, the
    networks stored, converged, selected and excluded; `history` holds the training curves of the
    networks analysed (columns `HISTORY_COLUMNS`: one row per network and epoch). Networks of one
    layout (the usual case) also have `weights` `[n, n_params]`, row i belonging to `networks`
    row i, and `layout`.
    """

    networks: pd.DataFrame
    blocks: dict[str, np.ndarray]
    layouts: dict[str, LayoutLike]
    summary: pd.DataFrame
    max_per_class: int
    converged_only: bool
    history: pd.DataFrame

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(sorted(self.networks["task"].unique()))

    @property
    def layout(self) -> LayoutLike:
        """The networks' one layout; ConfigError naming the layouts where there are several."""
        self._check_one_layout()
        return next(iter(self.layouts.values()))

    @property
    def weights(self) -> np.ndarray:
        """Every network's flat weights `[n, n_params]` (one layout only: vectors of different
        lengths do not stack; use `blocks` for several)."""
        self._check_one_layout()
        return next(iter(self.blocks.values()))

    def _check_one_layout(self) -> None:
        if len(self.layouts) > 1:
            raise ConfigError(f"these networks have {len(self.layouts)} weight layouts "
                              f"({', '.join(self.layouts)}): raw weights do not stack into one "
                              "matrix; take each layout's from `blocks`")


def open_datasets(paths: Sequence[Path | str] | Path | str) -> list[DatasetLike]:
    """Open each dataset directory (one path alone is one dataset) with `mlc.dataset.open`
    (imported here, not at package import: it loads torch)."""
    if isinstance(paths, str | Path):
        paths = [paths]  # a str is a sequence too: of one-character "paths"
    if not paths:
        raise ConfigError("no dataset given; pass at least one dataset directory")
    from mlc import dataset

    return [dataset.open(Path(p)) for p in paths]


def load_datasets(paths: Sequence[Path | str] | Path | str, *, max_per_class: int = 1000,
                  converged_only: bool = False) -> MergedData:
    """Open the dataset directories and merge them (see `merge_datasets`)."""
    return merge_datasets(open_datasets(paths), max_per_class=max_per_class,
                          converged_only=converged_only)


def merge_datasets(datasets: Sequence[DatasetLike], *, max_per_class: int = 1000,
                   converged_only: bool = False) -> MergedData:
    """Concatenate the datasets' tables, keep at most `max_per_class` networks per (task, device
    kind) (the first by index, as the spec's DS-N subsets do), and read only their weights.

    Networks whose weights are not finite are excluded and counted in `summary`, never dropped
    silently; with `converged_only`, so are networks that did not converge. A network found in
    more than one dataset (bit-identical weights: the same dataset twice, a dataset and its export,
    two runs of one preset on one kind of device) is analysed once and its copies are counted as
    `n_duplicates`: copies on both sides of a train/test split score every classifier 100%.
    """
    if not datasets:
        raise ConfigError("no dataset given; pass at least one dataset")
    paths = [datasets] if isinstance(datasets, str | Path) else [
        d for d in datasets if isinstance(d, str | Path)]
    if paths:
        raise ConfigError(f"merge_datasets takes opened datasets, not paths ({paths[0]}); "
                          "open them with mlc.dataset.open, or call load_datasets(paths)")
    if max_per_class < 1:
        raise ConfigError(f"max_per_class must be at least 1, got {max_per_class}")
    layouts = _common_layouts(datasets)
    candidates = _candidates(datasets)
    # a copy: its weights were in an earlier dataset (within one, equal hashes are networks that
    # diverged alike, e.g. to all-NaN, which the finite check below counts)
    first_source = candidates.groupby("weights_sha256")["_source"].transform("min")
    copy = candidates["weights_sha256"].notna() & (candidates["_source"] > first_source)
    eligible = ~copy & (candidates["converged"] if converged_only else True)
    ranked = candidates[eligible].sort_values(["index", "_source"], kind="stable")
    chosen = ranked.groupby(["task", "device_kind"], sort=False).head(max_per_class)
    selected = candidates.loc[candidates.index.isin(chosen.index)]
    networks, blocks = _read_weights(datasets, selected)
    ids = networks["layout_id"].to_numpy()
    finite = np.ones(len(networks), dtype=bool)
    for layout_id, block in blocks.items():
        finite[ids == layout_id] = np.isfinite(block).all(axis=1)
    summary = _summary(candidates, candidates[copy], selected, networks[~finite])
    kept = networks[finite]
    history = _history(datasets, kept)
    blocks = {k: block[finite[ids == k]] for k, block in blocks.items() if finite[ids == k].any()}
    return MergedData(kept.drop(columns="_source").reset_index(drop=True), blocks,
                      {k: v for k, v in layouts.items() if k in blocks},
                      summary, max_per_class, converged_only, history)


def _history(datasets: Sequence[DatasetLike], kept: pd.DataFrame) -> pd.DataFrame:
    """The training curves of the `kept` networks, tagged with their dataset and task (a net_id
    alone is not unique across datasets: two runs of one preset share them)."""
    frames = []
    for source, rows in kept.groupby("_source", sort=True):
        curves = datasets[int(source)].history
        frames.append(curves.merge(rows[["net_id", "dataset", "task"]], on="net_id", how="inner"))
    history = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return history.reindex(columns=list(HISTORY_COLUMNS)).sort_values(
        ["dataset", "net_id", "epoch"], ignore_index=True)


def _common_layouts(datasets: Sequence[DatasetLike]) -> dict[str, LayoutLike]:
    """The datasets' layouts, which must be the same in each (one architecture, or one sweep)."""
    first = dict(datasets[0].layouts)
    for i, ds in enumerate(datasets[1:], start=2):
        if list(ds.layouts) != list(first):
            raise DatasetError(
                f"dataset {i} ({_name(ds, i)}) stores weights in layout {', '.join(ds.layouts)}, "
                f"dataset 1 ({_name(datasets[0], 1)}) in {', '.join(first)}; only networks of one "
                f"architecture (or one sweep) can be compared: analyse them separately")
    return first


def _name(ds: DatasetLike, position: int) -> str:
    return str(ds.manifest.get("name") or f"dataset-{position}")


def _candidates(datasets: Sequence[DatasetLike]) -> pd.DataFrame:
    """All datasets' network tables, one frame; `_source` is the position in `datasets`."""
    frames, seen = [], set()
    for source, ds in enumerate(datasets):
        name = _name(ds, source + 1)
        if name in seen:  # the same name twice (two runs of a preset) must stay distinguishable
            name = f"{name} ({source + 1})"
        seen.add(name)
        table = ds.networks
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise DatasetError(f"dataset {name} has no column {', '.join(missing)} in its networks "
                               f"table; it was written by an incompatible store: re-export it")
        if "layout_id" not in table.columns:  # a table of one layout may leave it unsaid
            (only,) = ds.layouts
            table = table.assign(layout_id=only)
        frames.append(table.assign(dataset=name, _source=source))
    merged = pd.concat(frames, ignore_index=True)
    merged["converged"] = merged["converged"].astype(bool)
    # A missing device kind would make groupby drop the network without a trace.
    merged["device_kind"] = merged["device_kind"].fillna("unknown").astype(str)
    return merged


def _read_weights(datasets: Sequence[DatasetLike],
                  selected: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The selected rows grouped by dataset and layout, and each layout's weights in that order."""
    tables: list[pd.DataFrame] = []
    blocks: dict[str, list[np.ndarray]] = {}
    for (source, layout_id), rows in selected.groupby(["_source", "layout_id"], sort=False):
        ids = rows["net_id"].tolist()
        block = np.asarray(datasets[int(source)].weights(net_ids=ids), dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != len(ids):
            raise DatasetError(f"dataset {rows['dataset'].iloc[0]} returned weights of shape "
                               f"{block.shape} for {len(ids)} networks; run `mlc dataset verify` on it")
        tables.append(rows)
        blocks.setdefault(str(layout_id), []).append(block)
    if not tables:
        raise DatasetError("no network to analyse: the datasets are empty (or, with "
                           "converged_only, none converged); train more networks or drop "
                           "converged_only")
    return pd.concat(tables), {k: np.concatenate(v) for k, v in blocks.items()}


def _summary(candidates: pd.DataFrame, copies: pd.DataFrame, selected: pd.DataFrame,
             nonfinite: pd.DataFrame) -> pd.DataFrame:
    keys = ["dataset", "task", "device_kind"]
    summary = candidates.groupby(keys, sort=True).agg(
        n_networks=("net_id", "size"), n_converged=("converged", "sum"))
    summary["n_duplicates"] = copies.groupby(keys).size()
    summary["n_selected"] = selected.groupby(keys).size()
    summary["n_nonfinite"] = nonfinite.groupby(keys).size()
    summary = summary.fillna(0).astype(int)
    summary["n_analysed"] = summary["n_selected"] - summary["n_nonfinite"]
    given = {name: i for i, name in enumerate(candidates["dataset"].unique())}  # in the order given
    summary = summary.reset_index()
    return summary.sort_values("dataset", key=lambda d: d.map(given), kind="stable", ignore_index=True)
