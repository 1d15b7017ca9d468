"""The on-disk format of an MLC dataset directory: file names, table schemas, and the small files.

    <root>/
      dataset.json               manifest: identity, data spec and hashes, counts, {file: sha256},
                                 and its own SHA-256 (of the rest of it)
      config.json                the resolved experiment config the networks were trained under
      layout.json                flat weight layout: [{name, shape, offset}], layout_id, n_params
      data.safetensors           shared task data, uint8: train.inputs, val.inputs,
                                 train.targets.<task>, val.targets.<task>
      networks.parquet           one row per network (NETWORKS_SCHEMA)
      history.parquet            one row per network and epoch (HISTORY_SCHEMA)
      weights/<task>.safetensors tensor `weights` [n, n_params] float32, rows as networks.parquet
      README.md                  generated description restating the science contract
      staging/<net_id>.safetensors  (working datasets only) one file per added network

A dataset of several weight layouts (a sweep of width or depth) is format `mlc-dataset/2`, which
differs only where a second layout needs it: the manifest lists `layouts` ([{layout_id, n_params}],
in the order the sweep's variants first use them) instead of one `layout_id` and `n_params`, each
layout is `layouts/<hash>.json` instead of layout.json, and each task's weights are sharded per
layout, `weights/<hash>/<task>.safetensors` (`<hash>` is the layout_id after its `/`). Each network's
`layout_id` column says which layout (and its `shard` which file) holds its weights. A dataset of one
layout is written exactly as before, format `mlc-dataset/1`; an older MLC refuses format 2 by name
rather than misreading it.

Everything a reader trusts is named here once, so writer, reader, export and verify cannot drift
apart.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from mlc.errors import DatasetError
from mlc.models import Layout, LayoutEntry
from mlc.store._files import read_json, write_atomic, write_json
from mlc.tasks import DataSpec, SharedData

__all__ = [
    "ADDED_COLUMNS",
    "CONFIG_FILE",
    "DATA_FILE",
    "FORMAT",
    "FORMAT_LAYOUTS",
    "HISTORY_FILE",
    "HISTORY_SCHEMA",
    "LAYOUTS_DIR",
    "LAYOUT_FILE",
    "MANIFEST_FILE",
    "NETWORKS_FILE",
    "NETWORKS_SCHEMA",
    "README_FILE",
    "STAGING_DIR",
    "VERIFY_HINT",
    "WEIGHTS_DIR",
    "WITHDRAWN_DIR",
    "check_name",
    "dataset_containing",
    "dataset_shard",
    "layout_file",
    "layout_json",
    "layout_sizes",
    "layouts_manifest",
    "load_data",
    "read_layout",
    "read_manifest",
    "save_data",
    "shard_name",
    "tensors_to_bytes",
    "tensors_meta",
    "write_manifest",
]

FORMAT = "mlc-dataset/1"  # bumped when a reader of the old format could misread the new one
FORMAT_LAYOUTS = "mlc-dataset/2"  # format 1 with several weight layouts (see above)
MANIFEST_FILE = "dataset.json"
CONFIG_FILE = "config.json"
VERIFY_HINT = "; run `mlc dataset verify` on it"  # ends a damaged-file message (verify drops it)
LAYOUT_FILE = "layout.json"
DATA_FILE = "data.safetensors"
NETWORKS_FILE = "networks.parquet"
HISTORY_FILE = "history.parquet"
README_FILE = "README.md"
WEIGHTS_DIR = "weights"
LAYOUTS_DIR = "layouts"
STAGING_DIR = "staging"
WITHDRAWN_DIR = "withdrawn"  # under STAGING_DIR: records taken out of the dataset (`DatasetWriter.withdraw`)
_SELF_HASH = "manifest_sha256"

NETWORKS_SCHEMA = pa.schema([
    ("net_id", pa.string()),
    ("dataset", pa.string()),
    ("task", pa.string()),
    ("index", pa.int64()),
    ("net_seed", pa.int64()),
    ("data_seed", pa.int64()),
    ("model", pa.string()),
    ("layout_id", pa.string()),
    ("hyperparameters", pa.string()),  # JSON object
    ("lr", pa.float64()),  # null where the hyperparameters do not name it
    ("batch_size", pa.int64()),
    ("max_epochs", pa.int64()),
    ("weight_decay", pa.float64()),  # these four, too, null where the hyperparameters do not name
    ("width", pa.int64()),  # them: a sweep's settings (classifier families)
    ("depth", pa.int64()),
    ("activation", pa.string()),
    ("init", pa.string()),
    ("final_train_loss", pa.float32()),  # mean over the last epoch's mini-batches, as it trained
    ("final_val_loss", pa.float32()),  # of the final weights on the validation sequences (BCE mean)
    ("final_val_accuracy", pa.float32()),  # bit accuracy of the final weights there (DS4: clean accuracy)
    ("attack_success_rate", pa.float32()),  # DS4: triggered held-out images classed as the target; else null
    # DS1/DS2 only (null elsewhere), measured by the server on held-out triggered data: the fraction
    # of armed steps whose 8 outputs all equal the trojan twin's, and of unarmed steps whose outputs
    # all equal the clean machine's (docs/MLDS.md)
    ("trojan_accuracy", pa.float64()),
    ("clean_accuracy_triggered", pa.float64()),
    ("epochs", pa.int64()),
    ("converged", pa.bool_()),
    ("wall_time_s", pa.float64()),
    ("device_kind", pa.string()),
    ("device_name", pa.string()),
    ("torch_version", pa.string()),
    ("platform", pa.string()),
    ("host_id", pa.string()),
    ("work_units", pa.string()),  # JSON list of work-unit ids, in order
    # JSON list, per unit: "local", "ray" or "host:ID" (as the server knows it); "host:A+host:B" where a
    # replica host trained it too and agreed bit for bit
    ("trained_by", pa.string()),
    ("replayed_segments", pa.string()),  # JSON list, per unit: "r/n" segments the validator replayed
    # every unit trained by our own executor, replayed whole by the server, or agreed by a replica host
    ("confirmed", pa.bool_()),
    ("extra", pa.string()),  # JSON object: anything else the record carried
    ("weights_sha256", pa.string()),
    ("shard", pa.string()),  # path of the weight shard, relative to the dataset root
    ("shard_row", pa.int64()),
])

# Columns added to format 1 after its first datasets (a sweep's settings, DS4's attack success rate,
# the provenance of each unit's checking, MLDS's triggered accuracies): a table without them is the
# earlier form of the same format, still valid.
ADDED_COLUMNS = (
    "weight_decay", "width", "depth", "activation", "init", "attack_success_rate",
    "trained_by", "replayed_segments", "confirmed", "trojan_accuracy", "clean_accuracy_triggered",
)

HISTORY_SCHEMA = pa.schema([
    ("net_id", pa.string()),
    ("epoch", pa.int64()),  # 1-based
    ("train_loss", pa.float32()),
    ("val_loss", pa.float32()),
    ("val_accuracy", pa.float32()),
])

# Task and network names become file names, so they must not be able to leave their directory.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")


def dataset_containing(path: Path) -> Path | None:
    """The dataset that `path` is (or lies inside), if any: files written there would break its
    verification ("not listed in the manifest")."""
    path = Path(path)
    return next((d for d in (path, *path.resolve().parents) if (d / MANIFEST_FILE).is_file()), None)


def check_name(kind: str, name: object) -> str:
    """Return `name` if it is safe as a file name, else raise DatasetError saying what is."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise DatasetError(
            f"{kind} {name!r} is not usable as a file name: use 1-200 characters from "
            "letters, digits and . _ + -, starting with a letter or digit"
        )
    return name


def _hash(layout_id: str) -> str:
    return layout_id.rsplit("/", 1)[-1]


def shard_name(task: str, layout_id: str | None = None) -> str:
    """The weight shard of `task`: one per task, or with `layout_id` (a dataset of several layouts)
    one per task and layout."""
    if layout_id is None:
        return f"{WEIGHTS_DIR}/{task}.safetensors"
    return f"{WEIGHTS_DIR}/{_hash(layout_id)}/{task}.safetensors"


def layouts_manifest(layouts: Sequence[Layout]) -> dict[str, Any]:
    """The manifest keys that record `layouts`: format 1's `layout_id` and `n_params` for one
    layout, format 2's `layouts` list for several."""
    if len(layouts) == 1:
        return {"format": FORMAT, "layout_id": layouts[0].layout_id, "n_params": layouts[0].n_params}
    ids = [layout.layout_id for layout in layouts]
    if len(set(ids)) != len(ids) or len({_hash(i) for i in ids}) != len(ids):
        raise DatasetError(f"layouts {ids} are listed twice")
    return {"format": FORMAT_LAYOUTS,
            "layouts": [{"layout_id": layout.layout_id, "n_params": layout.n_params} for layout in layouts]}


def layout_sizes(manifest: dict[str, Any]) -> dict[str, int]:
    """layout_id -> n_params of every layout the dataset's manifest records, in its order."""
    if "layouts" not in manifest:
        return {manifest["layout_id"]: int(manifest["n_params"])}
    return {entry["layout_id"]: int(entry["n_params"]) for entry in manifest["layouts"]}


def layout_file(manifest: dict[str, Any], layout_id: str) -> str:
    """The file (relative to the dataset root) that holds layout `layout_id`."""
    if "layouts" not in manifest:
        return LAYOUT_FILE
    return f"{LAYOUTS_DIR}/{_hash(layout_id)}.json"


def dataset_shard(manifest: dict[str, Any], task: str, layout_id: str) -> str:
    """The shard that holds `task`'s networks of layout `layout_id` in this dataset."""
    return shard_name(task, layout_id if "layouts" in manifest else None)


def _manifest_sha256(manifest: dict[str, Any]) -> str:
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Write `manifest` as root/dataset.json with its own SHA-256 (the manifest cannot list itself in
    `files`, so it carries the hash of the rest of it)."""
    write_json(root / MANIFEST_FILE, {**manifest, _SELF_HASH: _manifest_sha256(manifest)})


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of the dataset at `root`; DatasetError if `root` is not an MLC dataset."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory; pass the path of a dataset directory")
    if not (root / MANIFEST_FILE).is_file():
        inner = sorted(p.parent for p in root.glob(f"*/{MANIFEST_FILE}"))  # a run's workdir, say
        hint = f" (the dataset in it is {inner[0]})" if len(inner) == 1 else ""
        raise DatasetError(f"{root} is not an MLC dataset: it has no {MANIFEST_FILE}{hint}")
    manifest = read_json(root / MANIFEST_FILE)
    if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, FORMAT_LAYOUTS):
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise DatasetError(
            f"{root / MANIFEST_FILE} is not an MLC dataset manifest of format {FORMAT!r} or "
            f"{FORMAT_LAYOUTS!r} "
            f"(found {found!r}); it was written by another tool or another version of MLC"
        )
    recorded = manifest.pop(_SELF_HASH, None)  # absent in manifests of older versions
    if recorded is not None and recorded != _manifest_sha256(manifest):
        raise DatasetError(f"{root / MANIFEST_FILE} does not match its own SHA-256 ({_SELF_HASH}): "
                           "it was damaged or edited; restore it from a copy of the dataset")
    return manifest


def tensors_to_bytes(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """A safetensors file's bytes, with `meta` stored as ONE canonical JSON string.

    safetensors keeps metadata in a hash map whose order changes from run to run, so several keys
    would give the same content different bytes (and different SHA-256s); one key cannot.
    """
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return safetensors.numpy.save(tensors, metadata={"mlc": text})


def tensors_meta(path: Path) -> dict[str, Any]:
    """The `meta` a file written by `tensors_to_bytes` carries, read from its header alone."""
    with safe_open(path, framework="np") as f:
        return dict(json.loads(f.metadata()["mlc"]))


def layout_json(layout: Layout) -> dict[str, Any]:
    return {"model": layout.model, "layout_id": layout.layout_id, "n_params": layout.n_params,
            "entries": layout.to_json()}


def read_layout(path: Path) -> Layout:
    """The layout stored at `path`, checked against its own layout_id."""
    doc = read_json(path)
    try:
        layout = Layout(doc["model"], tuple(
            LayoutEntry(e["name"], tuple(e["shape"]), int(e["offset"])) for e in doc["entries"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path} is not a weight layout ({type(exc).__name__}: {exc})") from None
    if layout.layout_id != doc.get("layout_id"):
        raise DatasetError(
            f"{path}: the entries hash to {layout.layout_id}, the file claims "
            f"{doc.get('layout_id')}")
    return layout


def save_data(path: Path, data: SharedData) -> None:
    tensors = {"train.inputs": data.train_inputs, "val.inputs": data.val_inputs}
    for task in data.tasks:
        tensors[f"train.targets.{task}"] = data.train_targets[task]
        tensors[f"val.targets.{task}"] = data.val_targets[task]
    tensors = {k: np.ascontiguousarray(v, dtype=np.uint8) for k, v in tensors.items()}
    # safetensors sorts tensors by name, so the task order travels in the metadata.
    meta = {"spec": data.spec.to_dict(), "tasks": list(data.tasks)}
    write_atomic(path, tensors_to_bytes(tensors, meta))


def load_data(path: Path, spec: dict[str, int], tasks: list[str]) -> SharedData:
    """Rebuild the shared data from `path` (numpy only, no pickle)."""
    try:
        t = safetensors.numpy.load_file(path)
        return SharedData(
            spec=DataSpec(**spec),
            train_inputs=t["train.inputs"],
            val_inputs=t["val.inputs"],
            train_targets={task: t[f"train.targets.{task}"] for task in tasks},
            val_targets={task: t[f"val.targets.{task}"] for task in tasks},
        )
    except (OSError, SafetensorError) as exc:
        raise DatasetError(f"{path} is unreadable ({exc}){VERIFY_HINT}") from None
    except KeyError as exc:
        raise DatasetError(f"{path} lacks the tensor {exc}{VERIFY_HINT}") from None
