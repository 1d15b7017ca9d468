"""Feature sets a classifier sees: the raw weights, and two baselines that keep the analysis honest.

Raw flattened weights are what MLDS classified. They are not invariant to the network's symmetries:
permuting the hidden units of a layer gives the same function with different weights, so a classifier
on raw weights must learn around that. The weight statistics are invariant to those permutations
(norms, moments and singular values of each tensor do not change when its rows or columns are
permuted), so they show how much of the signal survives without any alignment. The final losses show
what a classifier learns from training outcome alone: if it matches the weights, the weights tell us
nothing the loss did not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mlc.analysis._data import LayoutLike, MergedData
from mlc.errors import ConfigError

__all__ = [
    "FEATURE_SETS",
    "FINAL_LOSSES",
    "LAYOUT_STATISTICS",
    "RAW_WEIGHTS",
    "WEIGHT_STATISTICS",
    "check_features",
    "feature_matrices",
    "layout_statistics",
    "loss_features",
    "weight_statistics",
]

RAW_WEIGHTS = "raw weights"
WEIGHT_STATISTICS = "weight statistics"
FINAL_LOSSES = "final losses"
FEATURE_SETS = (RAW_WEIGHTS, WEIGHT_STATISTICS, FINAL_LOSSES)

# A diverged network's loss can be 0, inf or NaN; clip into a range where log10 is finite and treat
# NaN as the worst loss, so such networks stay in the analysis as "trained badly".
_LOSS_FLOOR, _LOSS_CEILING = 1e-12, 1e12


def feature_matrices(data: MergedData) -> dict[str, np.ndarray]:
    """Every feature set for every network of `data`: name -> `[n, n_features]`, rows as
    `data.networks`.

    Networks of several weight layouts (a sweep of width or depth) have no raw-weight matrix, as
    their vectors differ in length, and their weight statistics are `layout_statistics`, which
    every layout has alike."""
    if not isinstance(data, MergedData):
        raise ConfigError(f"feature_matrices takes merged data, not {type(data).__name__}: merge the "
                          "datasets first (merge_datasets, or load_datasets from paths)")
    losses = loss_features(data.networks)
    if len(data.layouts) > 1:
        ids = data.networks["layout_id"].to_numpy()
        stats = np.empty((len(ids), len(LAYOUT_STATISTICS)), dtype=np.float32)
        for layout_id, block in data.blocks.items():
            stats[ids == layout_id] = layout_statistics(block, data.layouts[layout_id])
        return {WEIGHT_STATISTICS: stats, FINAL_LOSSES: losses}
    stats, _ = weight_statistics(data.weights, data.layout)
    return {
        RAW_WEIGHTS: data.weights,
        WEIGHT_STATISTICS: stats,
        FINAL_LOSSES: losses,
    }


def check_features(data: MergedData, features: Mapping[str, np.ndarray],
                   feature_sets: Sequence[str]) -> None:
    """Refuse feature matrices a report part cannot use: a set it needs is missing, or the rows are
    not `data`'s networks (matrices computed for other data, in a notebook cell not re-run, would
    be classified under the wrong labels without any error)."""
    unknown = [name for name in feature_sets if name not in features]
    if unknown:
        raise ConfigError(f"no feature matrix {unknown[0]!r}: the features hold {sorted(features)}; "
                          f"the known sets are {list(FEATURE_SETS)}")
    n = len(data.networks)
    for name in feature_sets:
        if len(features[name]) != n:
            raise ConfigError(f"the {name!r} features have {len(features[name])} rows and the data "
                              f"{n} networks: compute them with feature_matrices(data) for this data")


def weight_statistics(weights: np.ndarray,
                      layout: LayoutLike) -> tuple[np.ndarray, tuple[str, ...]]:
    """Permutation-invariant statistics of each tensor in `layout`.

    `weights` `[n, n_params]` -> (`[n, n_features]` float32, feature names). For each matrix: its
    Frobenius norm, mean, std, mean |w| and sorted singular values; for each vector (biases): its
    norm, mean, std and mean |w|.
    """
    columns: list[np.ndarray] = []
    names: list[str] = []
    n = weights.shape[0]
    for entry in layout.entries:
        size = math.prod(entry.shape)
        flat = weights[:, entry.offset:entry.offset + size].astype(np.float64)
        columns += [np.linalg.norm(flat, axis=1), flat.mean(axis=1), flat.std(axis=1),
                    np.abs(flat).mean(axis=1)]
        names += [f"{entry.name}.{s}" for s in ("norm", "mean", "std", "abs_mean")]
        if len(entry.shape) == 2:
            singular = np.linalg.svd(flat.reshape(n, *entry.shape), compute_uv=False)  # [n, k]
            columns += list(singular.T)
            names += [f"{entry.name}.sv{i}" for i in range(singular.shape[1])]
    return np.stack(columns, axis=1).astype(np.float32), tuple(names)


# Statistics every layout of a family has, whatever its width and depth: of all weights together,
# of the weight matrices (and kernels) together, of the biases and other vectors together, and of
# the first and the last matrix (which meet the fixed input and output), with that matrix's largest
# singular value.
_GROUPS = ("all", "matrices", "vectors", "first", "last")
_MOMENTS = ("rms", "mean", "std", "abs_mean")
LAYOUT_STATISTICS = tuple(f"{g}.{m}" for g in _GROUPS for m in _MOMENTS) + ("first.sv0", "last.sv0")


def layout_statistics(weights: np.ndarray, layout: LayoutLike) -> np.ndarray:
    """Permutation-invariant statistics that networks of different layouts share (names
    `LAYOUT_STATISTICS`): `weights` `[n, n_params]` -> `[n, len(LAYOUT_STATISTICS)]` float32."""
    n = weights.shape[0]
    parts = [(e, weights[:, e.offset:e.offset + math.prod(e.shape)].astype(np.float64))
             for e in layout.entries]
    matrices = [(e, flat) for e, flat in parts if len(e.shape) >= 2]
    vectors = [flat for e, flat in parts if len(e.shape) < 2] or [np.zeros((n, 1))]
    groups = [np.concatenate([flat for _, flat in parts], axis=1),
              np.concatenate([flat for _, flat in matrices], axis=1),
              np.concatenate(vectors, axis=1), matrices[0][1], matrices[-1][1]]
    columns = []
    for flat in groups:
        columns += [np.sqrt((flat ** 2).mean(axis=1)), flat.mean(axis=1), flat.std(axis=1),
                    np.abs(flat).mean(axis=1)]
    for entry, flat in (matrices[0], matrices[-1]):
        square = flat.reshape(n, entry.shape[0], -1)  # a kernel [out, in, h, w] as [out, in*h*w]
        columns.append(np.linalg.svd(square, compute_uv=False)[:, 0])
    return np.stack(columns, axis=1).astype(np.float32)


def loss_features(networks: pd.DataFrame) -> np.ndarray:
    """log10 of the final training and validation losses: `[n, 2]` float32."""
    losses = networks[["final_train_loss", "final_val_loss"]].to_numpy(dtype=np.float64)
    losses = np.where(np.isnan(losses), _LOSS_CEILING, losses)
    return np.log10(np.clip(losses, _LOSS_FLOOR, _LOSS_CEILING)).astype(np.float32)
