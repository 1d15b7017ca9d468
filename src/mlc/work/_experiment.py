"""Experiments from presets: TOML data resolved into a checked `ExperimentConfig`.

Presets are data, never code. Command-line overrides are applied to the parsed table before
checking, so an override is validated exactly like a preset value; the resolved config is saved
next to every output.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mlc import models, tasks
from mlc.errors import ConfigError, UnknownNameError
from mlc.tasks import DataSpec
from mlc.train import TrainConfig

__all__ = ["ExperimentConfig", "load_preset", "preset_names"]

_TOP_KEYS = {
    "name",
    "description",
    "model",
    "spec_version",
    "seed",
    "tasks",
    "networks_per_task",
    "networks_per_wu",
    "epochs_per_wu",
    "subsets",
    "data",
    "train",
    "task_params",
}


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    model: str
    spec_version: str
    seed: int
    tasks: tuple[str, ...]
    networks_per_task: int
    networks_per_wu: int
    epochs_per_wu: int
    data: DataSpec
    train: TrainConfig
    subsets: tuple[int, ...] = ()
    task_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def net_seed(self, task: str, index: int) -> int:
        """A network's init seed, from (preset seed, task, index) alone: stable under any schedule."""
        digest = hashlib.sha256(f"{self.seed}:{task}:{index}".encode()).digest()
        return int.from_bytes(digest[:7], "little")  # < 2**56, valid for torch.manual_seed

    @staticmethod
    def net_id(task: str, index: int) -> str:
        return f"{task}-{index:06d}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "spec_version": self.spec_version,
            "seed": self.seed,
            "tasks": list(self.tasks),
            "networks_per_task": self.networks_per_task,
            "networks_per_wu": self.networks_per_wu,
            "epochs_per_wu": self.epochs_per_wu,
            "subsets": list(self.subsets),
            "task_params": self.task_params,
            "data": {
                "seed": self.data.seed,
                "n_train": self.data.n_train,
                "n_val": self.data.n_val,
                "length": self.data.length,
            },
            "train": self.train.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExperimentConfig:
        unknown = sorted(set(raw) - _TOP_KEYS)
        if unknown:
            raise ConfigError(f"unknown preset keys {unknown}; known: {sorted(_TOP_KEYS)}")
        try:
            config = cls(
                name=_str(raw, "name"),
                model=_str(raw, "model"),
                spec_version=_str(raw, "spec_version"),
                seed=_int(raw, "seed", minimum=0),
                tasks=tuple(_str_list(raw, "tasks")),
                networks_per_task=_int(raw, "networks_per_task", minimum=1),
                networks_per_wu=_int(raw, "networks_per_wu", minimum=1),
                epochs_per_wu=_int(raw, "epochs_per_wu", minimum=1),
                subsets=tuple(_int_list(raw.get("subsets", []), "subsets")),
                data=DataSpec(**_table(raw, "data", {"seed", "n_train", "n_val", "length"})),
                train=TrainConfig.from_dict(_table(raw, "train", None)),
                task_params={k: dict(v) for k, v in (raw.get("task_params") or {}).items()},
            )
        except TypeError as exc:
            raise ConfigError(f"preset: {exc}") from None
        config._check_names()
        return config

    def _check_names(self) -> None:
        if not self.tasks:
            raise ConfigError("a preset needs at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError("a task is listed twice in the preset")
        models.config(self.model)  # raises UnknownNameError with the known names
        for task in self.tasks:
            tasks.get(task, **self.task_params.get(task, {}))


def _str(raw: dict[str, Any], key: str) -> str:
    if not isinstance(raw.get(key), str) or not raw[key]:
        raise ConfigError(f"preset key {key!r} must be a non-empty string")
    return raw[key]


def _int(raw: dict[str, Any], key: str, minimum: int) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"preset key {key!r} must be a whole number >= {minimum}, got {value!r}")
    return value


def _str_list(raw: dict[str, Any], key: str) -> list[str]:
    value = raw.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"preset key {key!r} must be a list of names")
    return value


def _int_list(value: Any, key: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and v > 0 for v in value):
        raise ConfigError(f"preset key {key!r} must be a list of positive whole numbers")
    return value


def _table(raw: dict[str, Any], key: str, allowed: set[str] | None) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"preset section [{key}] must be a table")
    if allowed is not None and set(value) - allowed:
        raise ConfigError(f"unknown keys {sorted(set(value) - allowed)} in [{key}]; known: {sorted(allowed)}")
    return value


def preset_names() -> tuple[str, ...]:
    files = resources.files("mlc.presets").iterdir()
    return tuple(sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml")))


def load_preset(name_or_path: str, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """A shipped preset by name, or a TOML file by path; `overrides` maps dotted keys
    (`networks_per_task`, `train.max_epochs`) to values and is applied before checking."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        text = path.read_text()
    elif name_or_path in preset_names():
        text = resources.files("mlc.presets").joinpath(f"{name_or_path}.toml").read_text()
    else:
        raise UnknownNameError(
            f"unknown preset {name_or_path!r}: not a .toml file, and not one of {', '.join(preset_names())}"
        )
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset {name_or_path}: invalid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        table = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            table = table.setdefault(part, {})
        table[leaf] = value
    return ExperimentConfig.from_dict(raw)
