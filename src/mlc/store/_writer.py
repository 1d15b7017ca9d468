"""DatasetWriter: builds one dataset directory incrementally, so that a crash at any instant loses
at most the network being added and never stores a result twice.

The directory is created whole (built beside its final name, then renamed), networks are staged one
file each as they arrive, and `finalize` consolidates the staged files into the release layout. The
staged files are kept, so the writer can be reopened after a crash or after a finalize, more
networks added, and the dataset finalized again; an experiment that grows (more networks per
task, nothing else changed) reopens it with its new config. One writer process per directory.

Every file is covered by a SHA-256 recorded when it is written: the input files (config, layout,
data) in the manifest's `inputs`, each staged network inside its own file, the release files in the
manifest's `files`. Reopening checks the inputs; finalize checks the inputs and every staged network
before anything is consolidated, so a damaged file is refused by name, never released.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mlc.models
from mlc._storage import storage_errors
from mlc.errors import DatasetError
from mlc.models import Layout
from mlc.store._consolidate import TaskBatch, check_inputs, consolidate, input_files, now_utc
from mlc.store._files import (
    create_exclusive,
    file_sha256,
    new_build_dir,
    read_json,
    remove_stale_temps,
    write_json,
)
from mlc.store._format import (
    CONFIG_FILE,
    DATA_FILE,
    LAYOUTS_DIR,
    MANIFEST_FILE,
    STAGING_DIR,
    WEIGHTS_DIR,
    WITHDRAWN_DIR,
    check_name,
    layout_file,
    layout_json,
    layout_sizes,
    layouts_manifest,
    load_data,
    read_layout,
    read_manifest,
    save_data,
    write_manifest,
)
from mlc.store._staging import (
    StagedNetwork,
    describe_difference,
    encode,
    read_key,
    read_staged,
    stage,
    to_batch,
)
from mlc.tasks import SharedData
from mlc.work._records import FinishedNetwork

__all__ = ["DatasetWriter"]

# Manifest keys that only a finalized dataset has; they describe files that a new add makes stale.
_FINAL_KEYS = ("finalized", "n_networks", "counts", "files")
# Manifest keys that make two datasets the same dataset (`created` is deliberately not one).
_IDENTITY_KEYS = ("format", "name", "preset", "spec_version", "model", "layout_id", "n_params",
                  "layouts", "tasks", "data", "data_hashes")


def _draft_manifest(name: str, preset: str, model: str, data: SharedData, spec_version: str,
                    layouts: Sequence[Layout]) -> dict[str, Any]:
    for task in data.tasks:
        check_name("task", task)
    strays = sorted({layout.model for layout in layouts} - {model})
    if not layouts or strays:
        raise DatasetError(f"a {model} dataset needs at least one {model} layout, got "
                           f"{[layout.layout_id for layout in layouts]}")
    recorded = layouts_manifest(layouts)  # format 1 for one layout, format 2 for several
    return {"format": recorded.pop("format"), "name": name, "preset": preset,
            "spec_version": spec_version, "created": now_utc(), "finalized": None, "model": model,
            **recorded, "tasks": list(data.tasks), "data": data.spec.to_dict(),
            "data_hashes": data.hashes()}


def _check_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config as it will read back from config.json (so comparisons see what is stored)."""
    try:
        return json.loads(json.dumps(config, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"the config must be plain JSON data to be stored ({exc})") from None


def _grows(stored: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether `config` is `stored` with more networks per task and nothing else changed: an
    experiment that grows keeps its dataset, networks and all."""
    old, new = stored.get("networks_per_task"), config.get("networks_per_task")
    if not (isinstance(old, int) and isinstance(new, int) and new > old):
        return False
    return {**stored, "networks_per_task": new} == config


def _build_new(root: Path, manifest: dict[str, Any], config: dict[str, Any],
               data: SharedData, layouts: Sequence[Layout]) -> None:
    """Write a fresh dataset directory beside `root` and rename it into place in one step."""
    tmp = new_build_dir(root, "creating")
    with storage_errors(tmp):
        (tmp / STAGING_DIR).mkdir()
        (tmp / WEIGHTS_DIR).mkdir()
        if "layouts" in manifest:
            (tmp / LAYOUTS_DIR).mkdir()
    write_json(tmp / CONFIG_FILE, config)
    for layout in layouts:
        write_json(tmp / layout_file(manifest, layout.layout_id), layout_json(layout))
    save_data(tmp / DATA_FILE, data)
    manifest["inputs"] = {name: file_sha256(tmp / name) for name in input_files(manifest)}
    write_manifest(tmp, manifest)
    with storage_errors(root):
        if root.exists():
            root.rmdir()  # empty, checked by the caller
        os.rename(tmp, root)


class DatasetWriter:
    """Builds one dataset directory; get one from `create` or `open`."""

    def __init__(self, root: Path, manifest: dict[str, Any], config: dict[str, Any],
                 keys: dict[str, tuple[str, int]]) -> None:
        self.path = root
        self._manifest = manifest
        self._config = config
        self._keys = keys  # net_id -> (task, index) of every staged network
        self._slots = {key: net_id for net_id, key in keys.items()}

    @classmethod
    def create(cls, root: Path | str, *, name: str, preset: str, config: dict[str, Any], model: str,
               data: SharedData, spec_version: str = "mlds-1",
               layouts: Sequence[Layout] | None = None) -> DatasetWriter:
        """Make the dataset directory `root` with its data, config, layout(s) and a draft manifest.

        `layouts` are the weight layouts its networks come in (`ExperimentConfig.layouts`; default:
        the model's own); several make a dataset of format 2 (see `mlc.store._format`). If `root`
        already holds this same dataset (same identity, layouts, data and config) it is reopened,
        so a crashed run can call `create` again; a different dataset there is refused.
        """
        root = Path(root)
        if not isinstance(name, str) or not name:
            raise DatasetError("a dataset needs a non-empty name")
        layouts = tuple(layouts) if layouts is not None else (mlc.models.layout(model),)
        manifest = _draft_manifest(name, preset, model, data, spec_version, layouts)
        config = _check_config(config)
        if (root / MANIFEST_FILE).exists():
            return cls._reopen_same(root, manifest, config)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise DatasetError(f"{root} exists and is not an empty directory; choose a new path "
                               "for the dataset or remove what is there")
        _build_new(root, manifest, config, data, layouts)
        return cls(root, manifest, config, {})

    @classmethod
    def _reopen_same(cls, root: Path, manifest: dict[str, Any],
                     config: dict[str, Any]) -> DatasetWriter:
        writer = cls.open(root)
        differ = [k for k in _IDENTITY_KEYS if writer._manifest.get(k) != manifest.get(k)]
        if not differ and writer._config != config and _grows(writer._config, config):
            writer._grow(config)
        differ += ["config"] if writer._config != config else []
        if differ:
            raise DatasetError(
                f"{root} already holds a different dataset ({', '.join(differ)} differ); choose "
                "another directory (for `mlc run`, another --workdir), or continue the one that is there "
                "with DatasetWriter.open")
        return writer

    @classmethod
    def open(cls, root: Path | str) -> DatasetWriter:
        """Reopen a dataset made by `create` (unfinished or finalized) to add more networks.

        Checks the layout files against the manifest and the data against the manifest's hashes,
        and removes temporary files an interrupted write left behind. (`create`, which reopens
        through here, also checks the layouts against the current model code.)
        """
        root = Path(root)
        manifest = read_manifest(root)
        if not (root / STAGING_DIR).is_dir():
            raise DatasetError(f"{root} has no {STAGING_DIR}/ directory: it is a release export, "
                               "which cannot be added to; add to the working dataset it came from")
        for layout_id in layout_sizes(manifest):
            layout = read_layout(root / layout_file(manifest, layout_id))
            if layout.layout_id != layout_id:
                raise DatasetError(
                    f"{root / layout_file(manifest, layout_id)} is layout {layout.layout_id}, the "
                    f"manifest says {layout_id}; restore the file from a copy of the dataset")
        if "inputs" in manifest:  # datasets made before input hashes were recorded have none
            check_inputs(root, manifest["inputs"], input_files(manifest))
        data = load_data(root / DATA_FILE, manifest["data"], manifest["tasks"])
        if data.hashes() != manifest["data_hashes"]:
            raise DatasetError(f"{root / DATA_FILE} does not match the data hashes in "
                               f"{MANIFEST_FILE}; the dataset is corrupted, recreate it")
        for directory in (root, root / STAGING_DIR, root / WEIGHTS_DIR):
            if directory.is_dir():
                remove_stale_temps(directory)
        return cls(root, manifest, read_json(root / CONFIG_FILE), _scan_staging(root))

    def _grow(self, config: dict[str, Any]) -> None:
        """Take the config of the grown experiment: the dataset is a draft again (its tables lack the
        networks to come) until the next finalize, and says so before its config.json changes."""
        draft = {k: v for k, v in self._manifest.items() if k not in _FINAL_KEYS}
        draft["finalized"] = None
        write_manifest(self.path, draft)
        write_json(self.path / CONFIG_FILE, config)
        if "inputs" in draft:  # the new config.json's hash, as `create` records it
            draft["inputs"] = {**draft["inputs"], CONFIG_FILE: file_sha256(self.path / CONFIG_FILE)}
            write_manifest(self.path, draft)
        self._manifest, self._config = draft, config

    @property
    def name(self) -> str:
        return str(self._manifest["name"])

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self._manifest["tasks"])

    @property
    def n_staged(self) -> int:
        return len(self._keys)

    def staged_ids(self) -> set[str]:
        return set(self._keys)

    def add(self, net: FinishedNetwork) -> bool:
        """Stage one finished network; True if stored now, False if this same record already was.

        Raises DatasetError if the record is invalid for this dataset, or if a different record is
        already stored under its net_id or its (task, index): a result is never replaced or doubled.
        """
        staged = stage(net, self._manifest)
        data = encode(staged)
        path = self._staged_path(staged.net_id)
        if staged.net_id in self._keys:
            return self._check_same(path, staged, data)
        key = (staged.task, staged.index)
        if key in self._slots:
            raise DatasetError(
                f"network {staged.net_id!r} rejected: {staged.task} index {staged.index} is "
                f"already stored as {self._slots[key]!r}; a network must not be stored twice")
        self._unfinalize()
        if not create_exclusive(path, data):
            return self._check_same(path, staged, data)  # another process stored it first
        self._keys[staged.net_id] = key
        self._slots[key] = staged.net_id
        return True

    def withdraw(self, net_id: str, work_units: list[str], reason: str) -> bool:
        """Take a staged network out of the dataset, because the result it was built on was found
        untrustworthy after it was stored; True if withdrawn now, False if there was nothing to
        withdraw (never staged, already withdrawn, or staged again since from other units).

        Only the record trained by `work_units` is withdrawn, so a stale request never takes out the
        network retrained in its place. Its file is kept, out of the dataset's way, under
        `staging/withdrawn/`, and the manifest's `withdrawn` list says which network went, when and
        why (a release carries the list; `mlc dataset verify` checks nothing else changed). The
        slot is free again: the network's retrain is added as any network is.
        """
        path = self._staged_path(net_id)
        if net_id not in self._keys or not path.exists():
            return False
        if list(read_staged(path).meta["work_units"]) != list(work_units):
            return False
        self._unfinalize()
        aside = self.path / STAGING_DIR / WITHDRAWN_DIR
        aside.mkdir(exist_ok=True)
        said = [e for e in self._manifest.get("withdrawn", [])
                if e["net_id"] == net_id and e["work_units"] == list(work_units)]
        if said:  # recorded by an attempt that died before it moved the file
            target = self.path / said[0]["file"]
        else:
            n = 1 + sum(1 for e in self._manifest.get("withdrawn", []) if e["net_id"] == net_id)
            target = aside / f"{net_id}.{n}.safetensors"
            entry = {"net_id": net_id, "work_units": list(work_units), "reason": reason,
                     "withdrawn_at": now_utc(), "file": target.relative_to(self.path).as_posix()}
            self._manifest["withdrawn"] = [*self._manifest.get("withdrawn", []), entry]
            write_manifest(self.path, self._manifest)  # the record first: a crash leaves it said
        os.replace(path, target)
        task_index = self._keys.pop(net_id)
        del self._slots[task_index]
        return True

    def _unfinalize(self) -> None:
        """Mark the release files stale (they no longer hold exactly the staged networks), on disk."""
        if self.finalized:
            self._manifest = {k: v for k, v in self._manifest.items() if k not in _FINAL_KEYS}
            self._manifest["finalized"] = None
            write_manifest(self.path, self._manifest)

    @property
    def finalized(self) -> bool:
        """Whether the release files hold every staged network (no add since the last finalize)."""
        return self._manifest.get("finalized") is not None

    def finalize(self) -> Path:
        """Consolidate every staged network into the release files; returns the dataset path.

        Deterministic: the files depend only on the staged records, not on the order of the adds.
        """
        names = input_files(self._manifest)
        inputs = self._manifest.get("inputs") or {  # older datasets: as the release recorded them
            name: self._manifest.get("files", {}).get(name) or file_sha256(self.path / name)
            for name in names}
        check_inputs(self.path, inputs, names)
        batches = list(self._tasks_in_order())
        for _, ids in batches:  # every staged file against its hash, before anything is rewritten
            for net_id in ids:
                read_staged(self._staged_path(net_id))
        draft = {k: v for k, v in self._manifest.items() if k not in _FINAL_KEYS}
        draft["finalized"] = None
        write_manifest(self.path, draft)  # readers see "unfinished" while files change
        self._manifest = consolidate(self.path, draft, self._config, self._batches(batches), inputs)
        return self.path

    def _staged_path(self, net_id: str) -> Path:
        return self.path / STAGING_DIR / f"{net_id}.safetensors"

    def _check_same(self, path: Path, staged: StagedNetwork, data: bytes) -> bool:
        if path.read_bytes() == data:
            return False
        differ = describe_difference(read_staged(path), staged)
        raise DatasetError(
            f"network {staged.net_id!r} conflicts with the record already stored under that net_id "
            f"({differ} differ); a stored result is never replaced: give the new network its own "
            "net_id or discard it")

    def _tasks_in_order(self) -> Iterator[tuple[str, list[str]]]:
        """(task, its staged net_ids in index order) for every task that has any."""
        for task in self.tasks:
            ids = sorted((index, net_id) for net_id, (t, index) in self._keys.items() if t == task)
            if ids:
                yield task, [net_id for _, net_id in ids]

    def _batches(self, tasks: list[tuple[str, list[str]]]) -> Iterator[TaskBatch]:
        for task, ids in tasks:
            yield to_batch(task, [read_staged(self._staged_path(net_id)) for net_id in ids])


def _scan_staging(root: Path) -> dict[str, tuple[str, int]]:
    """net_id -> (task, index) of every staged network, from the file headers."""
    keys: dict[str, tuple[str, int]] = {}
    for path in sorted((root / STAGING_DIR).glob("*.safetensors")):
        net_id, task, index = read_key(path)
        if path.stem != net_id:
            raise DatasetError(f"staged file {path} holds network {net_id!r}; move it aside and "
                               "add that network again")
        keys[net_id] = (task, index)
    return keys
