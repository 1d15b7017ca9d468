"""Staging: each added network is one small, self-contained file until finalize consolidates it.

One file per network (safetensors: the weights and the history arrays as float32 tensors, every
other field as canonical JSON in the metadata) makes an add a single atomic file creation, so a
crash loses at most the network being added, and a re-add can be compared byte for byte with what is
stored. Records are checked here before they are believed: a dataset must never hold a network it
cannot describe. Each file carries the SHA-256 of its content (every field and every array), written
with it and checked whenever it is read, so a flipped bit in a staged file is refused by name rather
than consolidated into a release.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import safetensors.numpy

from mlc.errors import DatasetError
from mlc.store._consolidate import TaskBatch
from mlc.store._format import (
    HISTORY_SCHEMA,
    NETWORKS_SCHEMA,
    STAGING_DIR,
    check_name,
    layout_sizes,
    tensors_meta,
    tensors_to_bytes,
)
from mlc.work._records import FinishedNetwork, weights_sha256

__all__ = ["STAGED_REMEDY", "StagedNetwork", "content_sha256", "describe_difference", "encode",
           "read_key", "read_staged", "scan_staged", "set_aside_staged", "stage", "to_batch"]

_HISTORY = ("train_loss", "val_loss", "val_accuracy")
_TEXT_FIELDS = ("device_kind", "device_name", "torch_version", "platform", "host_id")
_FLAT_HYPERPARAMETERS = {
    "lr": float, "batch_size": int, "max_epochs": int, "weight_decay": float, "width": int, "depth": int,
    "activation": str, "init": str,
}
_FLAT_METRICS = ("attack_success_rate",)  # from `extra`, where the validator measured them
_TRIGGERED = ("trojan_accuracy", "clean_accuracy_triggered")  # absent from a record: null
_DIGEST = "content_sha256"  # metadata key of the file's own content hash
STAGED_REMEDY = ("`mlc run` on its workdir sets it aside and trains that network again (with a "
                 "DatasetWriter of your own: delete the file and add that network again)")


@dataclass(frozen=True)
class StagedNetwork:
    """A checked record in canonical form.

    `meta`: every JSON field of the record; `arrays`: `weights` [n_params] and `train_loss`,
    `val_loss`, `val_accuracy` [epochs], all float32.
    """

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def net_id(self) -> str:
        return str(self.meta["net_id"])

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def index(self) -> int:
        return int(self.meta["index"])


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=_json_default)


def _integer(name: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be an integer, got a bool")
    try:
        number = operator.index(value)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {type(value).__name__}") from None
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def _check_hyperparameters(hp: object) -> dict[str, Any]:
    if not isinstance(hp, dict) or not all(isinstance(k, str) for k in hp):
        raise ValueError("hyperparameters must be a dict with string keys")
    try:
        canonical = json.loads(_canonical_json(hp))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"hyperparameters are not JSON-serialisable ({exc})") from None
    for key, kind in _FLAT_HYPERPARAMETERS.items():
        value = canonical.get(key)
        if value is None:
            continue
        if kind is str and not isinstance(value, str):
            raise ValueError(f"hyperparameters.{key} must be str, got {value!r}")
        if kind is not str and (isinstance(value, bool) or not isinstance(value, int | float)
                                or (kind is int and not isinstance(value, int))):
            raise ValueError(f"hyperparameters.{key} must be {kind.__name__}, got {value!r}")
    return canonical


def _check_arrays(net: FinishedNetwork, n_params: int) -> dict[str, np.ndarray]:
    w = net.weights
    if not isinstance(w, np.ndarray) or w.dtype != np.float32 or w.shape != (n_params,):
        got = f"{w.dtype} {list(w.shape)}" if isinstance(w, np.ndarray) else type(w).__name__
        raise ValueError(f"weights must be float32 [{n_params}] for this model, got {got}")
    if not np.isfinite(w).all():
        raise ValueError(f"weights hold {int((~np.isfinite(w)).sum())} non-finite values")
    arrays = {"weights": np.ascontiguousarray(w)}
    for name in _HISTORY:
        h = getattr(net, name)
        if not isinstance(h, np.ndarray) or h.ndim != 1 or not np.issubdtype(h.dtype, np.floating):
            raise ValueError(f"{name} must be a 1-D float array, one value per epoch")
        arrays[name] = np.ascontiguousarray(h, dtype=np.float32)
    lengths = {name: arrays[name].shape[0] for name in _HISTORY}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"history arrays differ in length: {lengths}")
    if lengths["val_loss"] < 1:
        raise ValueError("history is empty: a finished network has run at least one epoch")
    return arrays


def _check_identity(net: FinishedNetwork, manifest: dict[str, Any]) -> None:
    expected = {"dataset": manifest["name"], "model": manifest["model"],
                "data_seed": manifest["data"]["seed"]}
    for field, want in expected.items():
        if getattr(net, field) != want:
            raise ValueError(f"{field} is {getattr(net, field)!r}, this dataset's is {want!r}")
    layouts = layout_sizes(manifest)
    if net.layout_id not in layouts:
        said = f"is {next(iter(layouts))!r}" if len(layouts) == 1 else f"are {list(layouts)}"
        raise ValueError(f"layout_id is {net.layout_id!r}, this dataset's {said}")
    if net.task not in manifest["tasks"]:
        raise ValueError(f"task {net.task!r} is not one of this dataset's tasks "
                         f"{manifest['tasks']}")


def _fraction(name: str, value: Any) -> float | None:
    """A measured fraction in [0, 1], or None where the task has none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise ValueError(f"{name} must be a number or None, got {value!r}")
    if not 0 <= float(value) <= 1:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


def _check_meta(net: FinishedNetwork, manifest: dict[str, Any]) -> dict[str, Any]:
    check_name("net_id", net.net_id)
    _check_identity(net, manifest)
    for name in _TEXT_FIELDS:
        if not isinstance(getattr(net, name), str):
            raise ValueError(f"{name} must be a string")
    if not isinstance(net.converged, bool | np.bool_):
        raise ValueError(f"converged must be a bool, got {type(net.converged).__name__}")
    wall = float(net.wall_time_s)
    if not math.isfinite(wall) or wall < 0:
        raise ValueError(f"wall_time_s must be finite and non-negative, got {net.wall_time_s}")
    if isinstance(net.work_units, str) or not all(isinstance(w, str) for w in net.work_units):
        raise ValueError("work_units must be a sequence of work-unit id strings")
    for name in ("trained_by", "replayed_segments"):
        values = getattr(net, name)
        if isinstance(values, str) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{name} must be a sequence of strings")
    if not isinstance(net.extra, dict):
        raise ValueError("extra must be a dict")
    triggered = {name: _fraction(name, getattr(net, name)) for name in _TRIGGERED}
    meta = {
        "net_id": net.net_id, "dataset": net.dataset, "task": net.task,
        "index": _integer("index", net.index), "net_seed": _integer("net_seed", net.net_seed),
        "data_seed": _integer("data_seed", net.data_seed), "model": net.model,
        "layout_id": net.layout_id, "hyperparameters": _check_hyperparameters(net.hyperparameters),
        "converged": bool(net.converged), "wall_time_s": wall, "work_units": list(net.work_units),
        "trained_by": list(net.trained_by), "replayed_segments": list(net.replayed_segments),
        "confirmed": bool(net.confirmed),
        **{name: getattr(net, name) for name in _TEXT_FIELDS},
        **{name: value for name, value in triggered.items() if value is not None},
    }
    try:
        meta["extra"] = json.loads(_canonical_json(net.extra))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra is not JSON-serialisable ({exc})") from None
    return meta


def stage(net: FinishedNetwork, manifest: dict[str, Any]) -> StagedNetwork:
    """Check `net` against the dataset's manifest and return its canonical form.

    Raises DatasetError naming the network and the reason if the record does not belong here.
    """
    if not isinstance(net, FinishedNetwork):
        raise DatasetError(f"add() takes a FinishedNetwork, got {type(net).__name__}")
    try:
        meta = _check_meta(net, manifest)
        arrays = _check_arrays(net, layout_sizes(manifest)[net.layout_id])
    except (TypeError, ValueError, DatasetError) as exc:
        raise DatasetError(f"network {net.net_id!r} rejected: {exc}") from None
    return StagedNetwork(meta, arrays)


def content_sha256(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the canonical JSON of `meta` and every array's name, dtype, shape and bytes."""
    h = hashlib.sha256(_canonical_json(meta).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{array.dtype.str}\0{list(array.shape)}\0".encode())
        h.update(memoryview(array).cast("B"))
    return h.hexdigest()


def encode(staged: StagedNetwork) -> bytes:
    """The staging file's bytes, its content hash included: identical records give identical bytes."""
    meta = {**staged.meta, _DIGEST: content_sha256(staged.meta, staged.arrays)}
    return tensors_to_bytes(staged.arrays, meta)


def read_staged(path: Path) -> StagedNetwork:
    """The record in the staged file `path`, checked against the content hash it was written with."""
    try:
        arrays = safetensors.numpy.load_file(path)
        meta = tensors_meta(path)
    except Exception as exc:  # noqa: BLE001 - any damage (bad UTF-8, JSON, offsets) means unreadable
        raise DatasetError(
            f"staged network {path} is unreadable ({type(exc).__name__}: {exc}); {STAGED_REMEDY}"
        ) from None
    recorded = meta.pop(_DIGEST, None)
    if recorded is None:
        raise DatasetError(f"staged network {path} carries no content hash (damaged, or written by "
                           f"an MLC older than staged hashes); {STAGED_REMEDY}")
    if recorded != content_sha256(meta, arrays):
        raise DatasetError(f"staged network {path} is corrupted: its content does not match the "
                           f"SHA-256 recorded when it was written; {STAGED_REMEDY}")
    return StagedNetwork(meta, arrays)


def read_key(path: Path) -> tuple[str, str, int]:
    """(net_id, task, index) of a staged file, from its header alone (no tensor data is read)."""
    try:
        meta = tensors_meta(path)
        return str(meta["net_id"]), str(meta["task"]), int(meta["index"])
    except Exception as exc:  # noqa: BLE001 - any damage (bad UTF-8, JSON, offsets) means unreadable
        raise DatasetError(
            f"staged network {path} is unreadable ({type(exc).__name__}: {exc}); {STAGED_REMEDY}"
        ) from None


def scan_staged(root: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Every staged network of the dataset at `root`, each checked against its content hash:
    ({net_id: its record's fields, with `epochs`}, {net_id: why its file is damaged}). The staging
    folder's absence is no network."""
    good: dict[str, dict[str, Any]] = {}
    damaged: dict[str, str] = {}
    for path in sorted((root / STAGING_DIR).glob("*.safetensors")):
        try:
            record = read_staged(path)
        except DatasetError as exc:
            damaged[path.stem] = str(exc)
            continue
        if record.net_id != path.stem:
            damaged[path.stem] = f"staged file {path} holds network {record.net_id!r}; {STAGED_REMEDY}"
            continue
        good[record.net_id] = {**record.meta, "epochs": int(record.arrays["val_loss"].shape[0])}
    return good, damaged


def set_aside_staged(root: Path, net_id: str) -> Path:
    """Move a damaged staged file out of the dataset's way (kept beside it for inspection); returns
    where it went. Nothing reads `*.damaged-N` files."""
    path = root / STAGING_DIR / f"{net_id}.safetensors"
    for n in range(1, 10_000):
        target = path.with_name(f"{path.name}.damaged-{n}")
        if not target.exists():
            os.rename(path, target)
            return target
    raise DatasetError(f"{path.parent} holds 10,000 set-aside copies of {net_id}; clear them out")


def describe_difference(stored: StagedNetwork, new: StagedNetwork) -> str:
    """Which fields differ between two records of the same net_id (for the conflict message)."""
    fields = [k for k in sorted(stored.meta.keys() | new.meta.keys())
              if stored.meta.get(k) != new.meta.get(k)]
    fields += [k for k in stored.arrays if not np.array_equal(stored.arrays[k], new.arrays.get(k))]
    return ", ".join(fields) or "encoding only"


def _nullable(values: list[Any], kind: type, arrow: pa.DataType) -> pa.Array:
    """A column of `values`, None as null."""
    if kind is str:
        return pa.array(values, type=arrow)
    missing = np.array([v is None for v in values], dtype=bool)
    return pa.array(np.array([0 if v is None else v for v in values], dtype=kind), mask=missing, type=arrow)


def to_batch(task: str, staged: list[StagedNetwork]) -> TaskBatch:
    """One task's networks (non-empty, already in index order) as table rows, history rows and a
    weight matrix."""
    meta = [s.meta for s in staged]
    epochs = np.array([s.arrays["val_loss"].shape[0] for s in staged], dtype=np.int64)
    hp = [m["hyperparameters"] for m in meta]
    columns: dict[str, Any] = {
        name: [m[name] for m in meta]
        for name in ("net_id", "dataset", "task", "model", "layout_id", *_TEXT_FIELDS)
    }
    columns |= {name: np.array([m[name] for m in meta], dtype=np.int64)
                for name in ("index", "net_seed", "data_seed")}
    columns["hyperparameters"] = [_canonical_json(h) for h in hp]
    for key, kind in _FLAT_HYPERPARAMETERS.items():
        columns[key] = _nullable([h.get(key) for h in hp], kind, NETWORKS_SCHEMA.field(key).type)
    for key in _FLAT_METRICS:
        columns[key] = _nullable([m["extra"].get(key) for m in meta], float, NETWORKS_SCHEMA.field(key).type)
    for name in _HISTORY:
        columns[f"final_{name}"] = np.array([s.arrays[name][-1] for s in staged], dtype=np.float32)
    for name in _TRIGGERED:
        missing = np.array([m.get(name) is None for m in meta], dtype=bool)
        values = np.array([m.get(name) or 0.0 for m in meta], dtype=np.float64)
        columns[name] = pa.array(values, mask=missing, type=pa.float64())
    columns["epochs"] = epochs
    columns["converged"] = np.array([m["converged"] for m in meta], dtype=bool)
    columns["wall_time_s"] = np.array([m["wall_time_s"] for m in meta], dtype=np.float64)
    columns["work_units"] = [_canonical_json(m["work_units"]) for m in meta]
    # staged before these were recorded: unknown trainers, nothing replayed, not confirmed
    columns["trained_by"] = [_canonical_json(m.get("trained_by", [])) for m in meta]
    columns["replayed_segments"] = [_canonical_json(m.get("replayed_segments", [])) for m in meta]
    columns["confirmed"] = np.array([m.get("confirmed", False) for m in meta], dtype=bool)
    columns["extra"] = [_canonical_json(m["extra"]) for m in meta]
    columns["weights_sha256"] = [weights_sha256(s.arrays["weights"]) for s in staged]
    schema = pa.schema([f for f in NETWORKS_SCHEMA if f.name not in ("shard", "shard_row")])
    networks = pa.Table.from_pydict({f.name: columns[f.name] for f in schema}, schema=schema)
    history = pa.Table.from_pydict({
        "net_id": np.repeat(np.array(columns["net_id"], dtype=object), epochs),
        "epoch": np.concatenate([np.arange(1, e + 1, dtype=np.int64) for e in epochs]),
        **{name: np.concatenate([s.arrays[name] for s in staged]) for name in _HISTORY},
    }, schema=HISTORY_SCHEMA)
    weights: dict[str, list[np.ndarray]] = {}
    for s in staged:  # each layout's networks in index order, as their rows of the table
        weights.setdefault(s.meta["layout_id"], []).append(s.arrays["weights"])
    return TaskBatch(task, networks, history, {k: np.stack(v) for k, v in weights.items()})
