"""Choosing which networks a question uses: at most N per class, drawn reproducibly.

Balanced draws keep chance at 1/k, so a table's numbers can be read against one obvious baseline;
capped (unbalanced) draws keep every network of a small class when the classes differ in size.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_counts", "sample_per_class"]


def class_counts(labels: np.ndarray) -> dict[str, int]:
    """label -> number of networks, labels sorted."""
    values, counts = np.unique(labels, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


def sample_per_class(labels: np.ndarray, n_max: int, rng: np.random.Generator, *,
                     balanced: bool) -> np.ndarray:
    """Positions into `labels` (sorted): per class `min(count, n_max)` networks drawn without
    replacement, or with `balanced` the same number for every class (the smallest class's count,
    capped at `n_max`)."""
    counts = class_counts(labels)
    if not counts:
        return np.zeros(0, dtype=np.int64)
    common = min(min(counts.values()), n_max)
    chosen = []
    for label, count in counts.items():
        positions = np.flatnonzero(labels == label)
        take = common if balanced else min(count, n_max)
        chosen.append(rng.choice(positions, size=take, replace=False))
    return np.sort(np.concatenate(chosen))
