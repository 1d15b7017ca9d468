"""Hyperparameter sweeps as data: lists in a preset's `[train]` and `[model_settings]` tables.

A preset that gives a list for a setting (`lr = [1e-3, 1e-2]`, `activation = ["relu", "tanh"]`)
sweeps it: `[sweep] mode = "grid"` (the default) trains every combination, `mode = "random"` with
`count = N` draws N combinations, each setting independently and uniformly from its list, by
`Generator(PCG64([seed, k]))` for the k-th (seed: the sweep's, or the preset's). Each combination is
a `Variant`; the experiment trains `networks_per_task` networks of every variant on every task, and
each network records its variant's settings. A sweep of `width` or `depth` (LAYOUT_SETTINGS) gives
variants of different weight layouts: their networks never share a population, and the dataset
stores each layout's weights apart.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlc.errors import ConfigError
from mlc.train import TrainConfig

__all__ = ["LAYOUT_SETTINGS", "Sweep", "Variant", "split_lists"]

# model settings that change the weight layout: a sweep over them gives a dataset of several layouts,
# each variant's networks trained in populations of their own layout
LAYOUT_SETTINGS = ("width", "depth")
_SWEEP_KEYS = {"mode", "count", "seed"}


@dataclass(frozen=True)
class Variant:
    """One combination of settings: the training config and the model settings its networks use."""

    train: TrainConfig
    model_settings: dict[str, Any]


@dataclass(frozen=True)
class Sweep:
    """Which settings vary and how: `train` and `model` map a setting to its list of values."""

    mode: str
    count: int | None
    seed: int
    train: dict[str, list[Any]]
    model: dict[str, list[Any]]

    @classmethod
    def from_table(
        cls, table: dict[str, Any], train: dict[str, list[Any]], model: dict[str, list[Any]], seed: int
    ) -> Sweep:
        """The checked `[sweep]` table (`mode`, `count`, `seed`) over the listed settings."""
        unknown = sorted(set(table) - _SWEEP_KEYS)
        if unknown:
            raise ConfigError(f"unknown keys {unknown} in [sweep]; known: {sorted(_SWEEP_KEYS)}")
        mode, count = table.get("mode", "grid"), table.get("count")
        if mode not in ("grid", "random"):
            raise ConfigError(f"sweep.mode must be grid or random, got {mode!r}")
        if mode == "random" and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ConfigError(f"a random sweep needs sweep.count, a whole number >= 1; got {count!r}")
        if mode == "grid" and count is not None:
            raise ConfigError("sweep.count is for random sweeps; a grid trains every combination")
        sweep_seed = table.get("seed", seed)
        if isinstance(sweep_seed, bool) or not isinstance(sweep_seed, int) or sweep_seed < 0:
            raise ConfigError(f"sweep.seed must be a whole number >= 0, got {sweep_seed!r}")
        if not train and not model:
            raise ConfigError("a [sweep] table needs a list for at least one train or model setting")
        return cls(mode, count, sweep_seed, train, model)

    def combinations(self) -> list[dict[str, Any]]:
        """Each variant's swept values, keyed `train.<key>` / `model_settings.<key>`, in order."""
        named = [(f"train.{k}", self.train[k]) for k in sorted(self.train)]
        named += [(f"model_settings.{k}", self.model[k]) for k in sorted(self.model)]
        keys, lists = [k for k, _ in named], [v for _, v in named]
        if self.mode == "grid":
            return [dict(zip(keys, values, strict=True)) for values in itertools.product(*lists)]
        out = []
        for k in range(self.count or 0):
            rng = np.random.Generator(np.random.PCG64([self.seed, k]))
            out.append({key: values[int(rng.integers(len(values)))] for key, values in named})
        return out

    def variants(self, train: dict[str, Any], model: dict[str, Any]) -> tuple[Variant, ...]:
        """The variants over the base settings `train` and `model` (what the preset fixes)."""
        out = []
        for combo in self.combinations():
            swept_train = {k.removeprefix("train."): v for k, v in combo.items() if k.startswith("train.")}
            swept_model = {k.removeprefix("model_settings."): v for k, v in combo.items()
                           if k.startswith("model_settings.")}
            out.append(Variant(TrainConfig.from_dict(train | swept_train), model | swept_model))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "seed": self.seed} | ({"count": self.count} if self.count else {})


def split_lists(table: dict[str, Any], section: str) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """A preset table split into its fixed values and its swept ones (lists), each list checked to
    be non-empty and free of repeats."""
    fixed, swept = {}, {}
    for key, value in table.items():
        if not isinstance(value, list):
            fixed[key] = value
            continue
        if not value:
            raise ConfigError(f"{section}.{key} is an empty list: a sweep needs at least one value")
        if len({json.dumps(v) for v in value}) != len(value):
            raise ConfigError(f"{section}.{key} lists a value twice: {value}")
        swept[key] = value
    return fixed, swept
