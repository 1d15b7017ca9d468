"""Experiments from presets: TOML data resolved into a checked `ExperimentConfig`.

Presets are data, never code. Command-line overrides are applied to the parsed table before
checking, so an override is validated exactly like a preset value; the resolved config is saved
next to every output.

A DS3 preset names no tasks but a `[random_automata]` table; `load_preset` resolves it into concrete
`RandomAutomaton-<k>` tasks by running the learnability check (hours on a small CPU for the full
preset, see mlds-ds3.toml) and keeps the outcome in the config's `random_automata` record, so a
resolved config never reruns the check.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import numbers
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlc import models, tasks
from mlc.errors import ConfigError
from mlc.tasks import DataSpec
from mlc.train import LearnabilitySettings, SelectionProgress, TrainConfig, select_automata
from mlc.work._kernels import population_for
from mlc.work._limits import check_data_memory
from mlc.work._presets import describe_preset, preset_names, preset_text
from mlc.work._spec_versions import apply_spec_version, check_spec_version
from mlc.work._sweep import LAYOUT_SETTINGS, Sweep, Variant, split_lists

__all__ = [
    "ExperimentConfig",
    "describe_preset",
    "load_preset",
    "preset_from_text",
    "preset_names",
    "preset_text",
]

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
    "replay_segments",
    "subsets",
    "data",
    "train",
    "task_params",
    "random_automata",
    "model_settings",
    "sweep",
}
_RANDOM_KEYS = {"count", "n_states", "seed", "learnability"}
_LEARNABILITY_KEYS = {"enabled", *LearnabilitySettings.__dataclass_fields__}


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
    random_automata: dict[str, Any] | None = None  # DS3: generator settings + learnability record
    # segments per work unit whose start states a worker uploads, so a validator can replay one of
    # them (1: none; a trusted local run needs none, a volunteer server asks for several)
    replay_segments: int = 1
    model_settings: dict[str, Any] = field(default_factory=dict)  # fixed settings of a classifier family
    sweep: Sweep | None = None  # the settings that vary between networks, and how

    @property
    def variants(self) -> tuple[Variant, ...]:
        """Every combination of settings the experiment trains (one without a sweep); each task gets
        `networks_per_task` networks of each, network index `v * networks_per_task + i` for the
        i-th of variant v."""
        if self.sweep is None:
            return (Variant(self.train, self.model_settings),)
        return self.sweep.variants(self.train.to_dict(), self.model_settings)

    def variant_of(self, index: int) -> Variant:
        """The settings network `index` of a task trains under (a sweep numbers them by variant)."""
        variants = self.variants
        return variants[min(index // self.networks_per_task, len(variants) - 1)]

    def layout_of(self, variant: Variant) -> models.Layout:
        """The weight layout of `variant`'s networks (its width and depth; the model's own without)."""
        settings = {k: v for k, v in variant.model_settings.items() if k in LAYOUT_SETTINGS}
        return _layout(self.model, json.dumps(settings, sort_keys=True))

    @property
    def layouts(self) -> tuple[models.Layout, ...]:
        """The distinct weight layouts of the variants, in the order they first appear: one unless
        the sweep varies width or depth."""
        found: dict[str, models.Layout] = {}
        for variant in self.variants:
            layout = self.layout_of(variant)
            found.setdefault(layout.layout_id, layout)
        return tuple(found.values())

    @property
    def n_networks_per_task(self) -> int:
        return self.networks_per_task * len(self.variants)

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
            "data": self.data.to_dict(),
            "train": self.train.to_dict() | (self.sweep.train if self.sweep else {}),
        } | self._sweep_dict() | (
            {"random_automata": self.random_automata} if self.random_automata is not None else {}
        ) | (
            {"replay_segments": self.replay_segments} if self.replay_segments != 1 else {}
        )

    def _sweep_dict(self) -> dict[str, Any]:
        """The model settings and the sweep, where there are any (so configs without them read as
        they were stored before sweeps existed)."""
        model = self.model_settings | (self.sweep.model if self.sweep else {})
        return ({"model_settings": model} if model else {}) | (
            {"sweep": self.sweep.to_dict()} if self.sweep else {}
        )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExperimentConfig:
        unknown = sorted(set(raw) - _TOP_KEYS)
        if unknown:
            raise ConfigError(f"unknown preset keys {unknown}; known: {sorted(_TOP_KEYS)}")
        _reject_non_finite(raw)
        raw = apply_spec_version(raw)
        record = _resolved_record(raw)  # first: an unresolved DS3 table has no tasks yet
        train, model, sweep = _settings(raw)
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
                data=_data_spec(raw),
                train=TrainConfig.from_dict(train),
                task_params=_task_params(raw),
                random_automata=record,
                replay_segments=_int(raw, "replay_segments", minimum=1) if "replay_segments" in raw else 1,
                model_settings=model,
                sweep=sweep,
            )
        except TypeError as exc:
            raise ConfigError(f"preset: {exc}") from None
        config._check_names()
        return config

    def _check_names(self) -> None:
        if not self.tasks:
            raise ConfigError("a preset needs at least one task")
        twice = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
        if twice:
            raise ConfigError(f"a task is listed twice in the preset: {', '.join(twice)}")
        for variant in self.variants:  # raises UnknownNameError with the known names
            models.config(self.model, variant.model_settings)
        for task in self.tasks:
            tasks.get(task, **self.task_params.get(task, {}))
        check_spec_version(self.spec_version)


@functools.lru_cache(maxsize=256)
def _layout(model: str, settings: str) -> models.Layout:
    """`models.layout` of a model and its layout settings (JSON), built once: every work unit's spec
    names its layout, and building the module each time would cost a millisecond a unit."""
    return models.layout(model, json.loads(settings))


def _settings(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Sweep | None]:
    """The fixed train settings, the fixed model settings, and the sweep over the listed ones."""
    train, train_lists = split_lists(_table(raw, "train", None), "train")
    model, model_lists = split_lists(_table(raw, "model_settings", None), "model_settings")
    if not train_lists and not model_lists and "sweep" not in raw:
        return train, model, None
    seed = raw.get("seed", 0)
    return train, model, Sweep.from_table(_table(raw, "sweep", None), train_lists, model_lists, seed)


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
    whole = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if not whole or not all(v > 0 for v in value):
        raise ConfigError(f"preset key {key!r} must be a list of positive whole numbers, got {value!r}")
    return value


def _task_params(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-task parameters, one table per task of the preset (a name not in `tasks` is a typo)."""
    value = raw.get("task_params") or {}
    if not isinstance(value, dict):
        raise ConfigError(f"preset section [task_params] must hold one table per task, got {value!r}")
    listed = raw.get("tasks") or []
    for task, params in value.items():
        if not isinstance(params, dict):
            raise ConfigError(f"task_params.{task} must be a table of the task's parameters, got {params!r}")
        if task not in listed:
            raise ConfigError(f"[task_params] names {task}, which is not in the preset's tasks")
    return {task: dict(params) for task, params in value.items()}


def _plain(value: Any) -> Any:
    """An override as TOML would have given it: numpy scalars as int or float, tuples as lists."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _reject_non_finite(value: Any, key: str = "") -> None:
    """TOML allows `inf` and `nan`; no setting means them, and the stored config must be plain JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"preset key {key} must be a finite number, got {value}")
    if isinstance(value, dict):
        for k, v in value.items():
            _reject_non_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _reject_non_finite(v, f"{key}[{i}]")


def _table(
    raw: dict[str, Any], key: str, allowed: set[str] | None, section: str | None = None
) -> dict[str, Any]:
    """The table `raw[key]` (empty if absent), its keys among `allowed`; `section` names it in
    messages where it is nested (`random_automata.learnability`)."""
    value, section = raw.get(key, {}), section or key
    if not isinstance(value, dict):
        raise ConfigError(f"preset section [{section}] must be a table")
    if allowed is not None and set(value) - allowed:
        raise ConfigError(
            f"unknown keys {sorted(set(value) - allowed)} in [{section}]; known: {sorted(allowed)}"
        )
    return value


def _data_spec(raw: dict[str, Any]) -> DataSpec:
    rates = {"trigger_rate", "disarm_rate", "decoy_rate"}
    values = dict(_table(raw, "data", {"seed", "n_train", "n_val", "length", *rates}))
    if "seed" not in values:
        raise ConfigError("preset section [data] needs a `seed` (the inputs are drawn from it)")
    for key in rates & set(values):
        rate = values[key]
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise ConfigError(f"data.{key} must be a number in [0, 1], got {rate!r}")
        values[key] = float(rate)
    for key, value in values.items():
        if key in rates:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"data.{key} must be a whole number, got {value!r}")
    return DataSpec(**values)


def _resolved_record(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The `random_automata` record of a resolved config, checked against its task list; None if absent.

    A preset table without the check's outcome (`selection`) has not been resolved: only `load_preset`
    may run the check, so `from_dict` refuses it rather than train networks behind the caller's back.
    """
    record = raw.get("random_automata")
    if record is None:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("selection"), dict):
        raise ConfigError(
            "[random_automata] has not been resolved into tasks: load the preset with "
            "mlc.work.load_preset, which runs the learnability check, and give no `tasks` list beside it"
        )
    if list(record["selection"].get("kept", [])) != list(raw.get("tasks") or []):
        raise ConfigError("the random_automata record's kept automata differ from the config's tasks")
    return record


def _random_settings(raw: dict[str, Any]) -> tuple[int, dict[str, int], bool, LearnabilitySettings]:
    """The checked `[random_automata]` table: (count, task params, check enabled, check settings)."""
    spec = _table(raw, "random_automata", _RANDOM_KEYS)

    def whole(key: str, value: Any, minimum: int) -> int:
        return _int({f"random_automata.{key}": value}, f"random_automata.{key}", minimum)

    params = {
        "seed": whole("seed", spec.get("seed", raw.get("seed")), 0),  # default: the preset's
        "n_states": whole("n_states", spec.get("n_states"), 2),
    }
    check = dict(_table(spec, "learnability", _LEARNABILITY_KEYS, "random_automata.learnability"))
    enabled = check.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"random_automata.learnability.enabled must be true or false, got {enabled!r}")
    try:
        settings = LearnabilitySettings(**check)
    except ConfigError as exc:  # its messages name `learnability.<key>`, the preset nests it
        raise ConfigError(f"random_automata.{exc}") from None
    count = whole("count", spec.get("count"), 1)
    if enabled:  # a disabled check takes the first `count` automata and uses none of its settings
        _check_against_data(settings, count, _data_spec(raw))
    return count, params, enabled, settings


def _check_against_data(settings: LearnabilitySettings, count: int, data: DataSpec) -> None:
    """Settings the check could never meet, refused before it trains anything."""
    prefix = "random_automata.learnability"
    if settings.max_candidates < count:
        raise ConfigError(
            f"{prefix}.max_candidates ({settings.max_candidates}) is below random_automata.count ({count}): "
            "the check could never keep enough automata"
        )
    for key, available in (("n_train", data.n_train), ("length", data.length)):
        wanted = getattr(settings, key)
        if wanted is not None and wanted > available:
            raise ConfigError(f"{prefix}.{key} is {wanted}, but data.{key} is {available}")


def _expand_random_automata(
    raw: dict[str, Any], progress: Callable[[SelectionProgress], None] | None, device: str
) -> dict[str, Any]:
    """`raw` with `[random_automata]` resolved: concrete `tasks`, `task_params` and the check's record."""
    count, params, enabled, settings = _random_settings(raw)
    if enabled:
        selection = select_automata(
            count,
            params,
            _data_spec(raw),
            settings,
            TrainConfig.from_dict(_table(raw, "train", None)),
            model=_str(raw, "model"),
            seed=params["seed"],
            device=device,
            progress=progress,
            population_factory=population_for,
        )
        kept, verdicts = list(selection.kept), [_finite(v.to_dict()) for v in selection.verdicts]
        tried = selection.n_tried
    else:
        kept, verdicts, tried = [f"RandomAutomaton-{k}" for k in range(count)], [], count
    rejected = [v["task"] for v in verdicts if not v["kept"]]
    record = {
        "count": count,
        **params,
        "learnability": {"enabled": enabled, **settings.to_dict(), "networks_required": settings.required},
        "selection": {
            "candidates_tried": tried,
            "kept": kept,
            "rejected": rejected,
            "fraction_rejected": len(rejected) / tried,
            "device": str(device),
            "verdicts": verdicts,
        },
    }
    return raw | {"tasks": kept, "task_params": {t: dict(params) for t in kept}, "random_automata": record}


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf (a diverged network) become None, so the record stays standard JSON."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()}


def load_preset(
    name_or_path: str,
    overrides: dict[str, Any] | None = None,
    *,
    progress: Callable[[SelectionProgress], None] | None = None,
    device: str = "cpu",
    known: Sequence[ExperimentConfig] = (),
) -> ExperimentConfig:
    """A shipped preset by name, or a TOML file by path; `overrides` maps dotted keys
    (`networks_per_task`, `train.max_epochs`) to values and is applied before checking.

    A `[random_automata]` preset is resolved here by training reference networks on `device` (the
    full DS3 preset takes hours on a 2-core CPU: use a GPU); `progress` is called after each of
    their epochs. A config in `known` (e.g. the experiments stored in a run's database) with the same
    name and the same generator and check settings lends its selection instead, so resuming a run
    never repeats the check.
    """
    text = preset_text(name_or_path)
    return preset_from_text(
        text, overrides, progress=progress, device=device, known=known, source=name_or_path
    )


def preset_from_text(
    text: str,
    overrides: dict[str, Any] | None = None,
    *,
    progress: Callable[[SelectionProgress], None] | None = None,
    device: str = "cpu",
    known: Sequence[ExperimentConfig] = (),
    source: str = "text",
) -> ExperimentConfig:
    """`load_preset` for a preset's TOML text (what `mlc admin submit` sends a server); `source`
    names it in messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset {source}: invalid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        table = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            table = table.setdefault(part, {})
        table[leaf] = _plain(value)
    _reject_non_finite(raw)  # before the learnability check trains anything; from_dict checks again
    automata = raw.get("random_automata")
    if isinstance(raw.get("data"), dict):  # before the learnability check draws the data
        count = automata.get("count") if isinstance(automata, dict) else None
        n_tasks = len(raw.get("tasks") or ()) or (count if isinstance(count, int) and count > 0 else 1)
        check_data_memory(_data_spec(raw), n_tasks)
    if "tasks" in raw and isinstance(automata, dict) and "selection" not in automata:
        raise ConfigError(
            "a preset with a [random_automata] table chooses its tasks by the learnability check: "
            "remove its `tasks` list (or the table, to train the tasks listed)"
        )
    if "random_automata" in raw and "tasks" not in raw:
        earlier = next((c for c in known if _same_selection(raw, c)), None)
        if earlier is None:
            raw = _expand_random_automata(raw, progress, device)
        else:
            raw = dict(
                raw,
                tasks=list(earlier.tasks),
                task_params=earlier.task_params,
                random_automata=earlier.random_automata,
            )
    return ExperimentConfig.from_dict(raw)


def _same_selection(raw: dict[str, Any], config: ExperimentConfig) -> bool:
    """Whether `config` resolved the same `[random_automata]` table (every key the table sets)."""
    record, table = config.random_automata, raw["random_automata"]
    if config.name != raw.get("name") or not record or not isinstance(table, dict):
        return False
    for key, value in table.items():
        if isinstance(value, dict):
            if any(record.get(key, {}).get(k) != v for k, v in value.items()):
                return False
        elif record.get(key) != value:
            return False
    return True
