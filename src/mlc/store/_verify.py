"""Verification of a finished dataset: every file against the manifest, every network's weights
against its table row, every history against its epoch count, the data against its hashes, and
(in a working dataset) every staged network against the content hash it was written with and against
its released row.

A verifier that raises on the first broken byte tells you less than one that lists everything it
found, so problems are collected, not raised; only a directory that is not a dataset at all raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pyarrow.parquet as pq
import safetensors.numpy

from mlc.errors import DatasetError
from mlc.store._files import file_sha256
from mlc.store._format import (
    ADDED_COLUMNS,
    DATA_FILE,
    HISTORY_FILE,
    MANIFEST_FILE,
    NETWORKS_FILE,
    NETWORKS_SCHEMA,
    STAGING_DIR,
    VERIFY_HINT,
    dataset_shard,
    layout_file,
    layout_sizes,
    load_data,
    read_layout,
    read_manifest,
    tensors_meta,
)
from mlc.store._reader import Dataset
from mlc.store._staging import read_staged
from mlc.work._records import weights_sha256

__all__ = ["VerifyReport", "verify_dataset"]

T = TypeVar("T")
_SHOWN = 5  # net_ids named per problem; the count says how many more


@dataclass
class VerifyReport:
    """What `verify_dataset` found; `ok` is True exactly when `problems` is empty."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    n_networks: int = 0
    n_files_checked: int = 0


def _attempt(problems: list[str], root: Path, what: str, check: Callable[[], T], default: T) -> T:
    """Run one check of the file `what` (relative to `root`); a missing or unreadable file becomes a
    problem instead of an exception, said once however many checks read the file."""
    if not (root / what).is_file():
        problems.append(f"{what}: missing")
        return default
    try:
        return check()
    except DatasetError as exc:  # its message names the file and what is wrong with it
        problems.append(str(exc).removesuffix(VERIFY_HINT))
        return default
    except Exception as exc:  # any unreadable file is a finding, never a crash
        problems.append(f"{what}: unreadable ({type(exc).__name__}: {exc})")
        return default


def _ids(ids: list[str]) -> str:
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    return ", ".join(ids[:_SHOWN]) + more


def _check_files(root: Path, files: dict[str, str], problems: list[str]) -> int:
    checked = 0
    for name, expected in sorted(files.items()):
        path = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            problems.append(f"{MANIFEST_FILE}: lists {name!r}, a path outside the dataset")
        elif not path.is_file():
            problems.append(f"{name}: missing")
        else:
            checked += 1
            actual = _attempt(problems, root, name, lambda p=path: file_sha256(p), None)
            if actual is not None and actual != expected:
                problems.append(f"{name}: SHA-256 does not match the manifest "
                                "(corrupted or changed)")
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_file() and name != MANIFEST_FILE and name not in files \
                and path.relative_to(root).parts[0] != STAGING_DIR:
            problems.append(f"{name}: not listed in the manifest")
    return checked


def _check_shard(root: Path, shard: str, rows: pd.DataFrame, n_params: int,
                 problems: list[str]) -> None:
    weights = _attempt(problems, root, shard,
                       lambda: safetensors.numpy.load_file(root / shard)["weights"], None)
    if weights is None:
        return
    if weights.shape != (len(rows), n_params):
        problems.append(f"{shard}: weights have shape {list(weights.shape)}, the table has "
                        f"{len(rows)} rows of {n_params} parameters")
        return
    if sorted(rows["shard_row"]) != list(range(len(rows))):
        problems.append(f"{shard}: the table's shard_row values are not 0..{len(rows) - 1}")
        return
    stored = rows[["net_id", "shard_row", "weights_sha256"]].itertuples(index=False)
    bad = [net_id for net_id, row, sha in stored if weights_sha256(weights[row]) != sha]
    if bad:
        problems.append(f"{shard}: {len(bad)} rows do not match their weights_sha256 ({_ids(bad)})")


def _check_networks(root: Path, manifest: dict[str, Any],
                    problems: list[str]) -> pd.DataFrame | None:
    """The networks table after checking it and its shards; None if it cannot be read."""
    def load() -> pd.DataFrame:  # whatever fails in here (Arrow, UTF-8, pandas) is a reported problem
        table = pq.read_table(root / NETWORKS_FILE)
        earlier = [name for name in NETWORKS_SCHEMA.names if name not in ADDED_COLUMNS]
        if table.schema.names not in (NETWORKS_SCHEMA.names, earlier):
            raise DatasetError(f"{NETWORKS_FILE}: columns {table.schema.names} are not the format's")
        return table.to_pandas()

    networks = _attempt(problems, root, NETWORKS_FILE, load, None)
    if networks is None:
        return None
    duplicated = networks["net_id"][networks["net_id"].duplicated()].tolist()
    if duplicated:
        problems.append(f"{NETWORKS_FILE}: net_ids stored more than once ({_ids(duplicated)})")
    for task in manifest["tasks"]:
        rows = networks[networks["task"] == task]
        found = {"networks": len(rows), "converged": int(rows["converged"].sum())}
        if manifest["counts"].get(task) != found:
            problems.append(f"{NETWORKS_FILE}: task {task} has {found}, the manifest says "
                            f"{manifest['counts'].get(task)}")
    strays = sorted(set(networks["task"]) - set(manifest["tasks"]))
    if strays:
        problems.append(f"{NETWORKS_FILE}: rows of tasks the dataset does not have: {strays}")
    sizes = layout_sizes(manifest)
    for shard, rows in networks.groupby("shard", sort=True):
        layouts = sorted(set(rows["layout_id"]))
        if len(layouts) != 1 or layouts[0] not in sizes:
            problems.append(f"{shard}: holds networks of layouts {layouts}, the manifest's are "
                            f"{list(sizes)} (one a shard)")
            continue
        expected = dataset_shard(manifest, str(rows["task"].iloc[0]), layouts[0])
        if shard != expected or rows["task"].nunique() != 1:
            problems.append(f"{shard}: holds {layouts[0]} networks of tasks "
                            f"{sorted(set(rows['task']))}, which belong in {expected}")
        _check_shard(root, str(shard), rows, sizes[layouts[0]], problems)
    return networks


def _check_staging(root: Path, networks: pd.DataFrame | None, problems: list[str]) -> None:
    """Each staged file against its own hash, and the staged networks against the released rows."""
    if not (root / STAGING_DIR).is_dir():
        return  # a release export
    staged: dict[str, str] = {}
    damaged: set[str] = set()
    for path in sorted((root / STAGING_DIR).glob("*.safetensors")):
        name = path.relative_to(root).as_posix()
        try:
            record = read_staged(path)
        except DatasetError as exc:  # names the file, says what is wrong and what to do
            problems.append(f"{name}: {exc}")
            damaged.add(path.stem)
            continue
        if record.net_id != path.stem:
            problems.append(f"{name}: holds network {record.net_id!r} (files swapped or renamed)")
            damaged.add(path.stem)
            continue
        staged[record.net_id] = weights_sha256(record.arrays["weights"])
    if networks is None:
        return
    released = dict(zip(networks["net_id"], networks["weights_sha256"], strict=True))
    for ids, what in (
        (sorted(set(staged) - set(released)), f"are staged but not in {NETWORKS_FILE} (added since "
                                               "the last finalize: finalize it again)"),
        (sorted(set(released) - set(staged) - damaged),
         f"are in {NETWORKS_FILE} but have no staged file (deleted from {STAGING_DIR}/?)"),
        (sorted(n for n in set(staged) & set(released) if staged[n] != released[n]),
         "have released weights other than their staged record's"),
    ):
        if ids:
            problems.append(f"{STAGING_DIR}/: {len(ids)} networks {what} ({_ids(ids)})")


def _check_history(root: Path, networks: pd.DataFrame, problems: list[str]) -> None:
    history = _attempt(problems, root, HISTORY_FILE,
                       lambda: pq.read_table(root / HISTORY_FILE).to_pandas(), None)
    if history is None:
        return
    per_net = history.groupby("net_id")["epoch"].agg(["count", "min", "max", "nunique"])
    epochs = networks.set_index("net_id")["epochs"]
    per_net = per_net.reindex(epochs.index.union(per_net.index))
    expected = epochs.reindex(per_net.index)
    good = ((per_net["count"] == expected) & (per_net["min"] == 1) & (per_net["max"] == expected)
            & (per_net["nunique"] == expected))
    bad = per_net.index[~good.to_numpy(dtype=bool)].tolist()
    if bad:
        problems.append(f"{HISTORY_FILE}: history rows do not run 1..epochs for {len(bad)} "
                        f"networks ({_ids(bad)})")


def _check_data(root: Path, manifest: dict[str, Any], problems: list[str]) -> None:
    data = _attempt(problems, root, DATA_FILE,
                    lambda: load_data(root / DATA_FILE, manifest["data"], manifest["tasks"]), None)
    if data is None:
        return
    hashes = data.hashes()
    for key, expected in sorted(manifest["data_hashes"].items()):
        if hashes.get(key) != expected:
            problems.append(f"{DATA_FILE}: {key} does not match its hash in the manifest")


def _check_manifest(root: Path, manifest: dict[str, Any], networks: pd.DataFrame | None,
                    problems: list[str]) -> None:
    """The manifest cannot list its own hash, so its fields are checked against the hashed files: the
    data file's own record of its spec and tasks, and the networks table."""
    meta = _attempt(problems, root, DATA_FILE, lambda: tensors_meta(root / DATA_FILE), None)
    if isinstance(meta, dict):
        for key, stored in (("data", meta.get("spec")), ("tasks", meta.get("tasks"))):
            if manifest.get(key) != stored:
                problems.append(f"{MANIFEST_FILE}: {key} is {manifest.get(key)!r}, {DATA_FILE} was "
                                f"written for {stored!r}")
    if networks is None:
        return
    _check_layout_column(manifest, networks, problems)
    if manifest.get("n_networks") != len(networks):
        problems.append(f"{MANIFEST_FILE}: n_networks is {manifest.get('n_networks')!r}, "
                        f"{NETWORKS_FILE} has {len(networks)} rows")
    data = manifest.get("data")
    expected = {"model": manifest.get("model"),
                "data_seed": data.get("seed") if isinstance(data, dict) else None}
    for column, value in expected.items():
        bad = networks.loc[networks[column] != value, "net_id"].tolist()
        if bad:
            problems.append(f"{NETWORKS_FILE}: {len(bad)} rows have a {column} other than the "
                            f"manifest's {value!r} ({_ids(bad)})")


def _check_layouts(root: Path, manifest: dict[str, Any], problems: list[str]) -> None:
    """Each layout file the manifest names against the layout_id and model it records."""
    for layout_id in layout_sizes(manifest):
        name = layout_file(manifest, layout_id)
        layout = _attempt(problems, root, name, lambda n=name: read_layout(root / n), None)
        if layout is not None and layout.layout_id != layout_id:
            problems.append(f"{name}: layout {layout.layout_id}, the manifest says {layout_id}")
        if layout is not None and layout.model != manifest.get("model"):
            problems.append(f"{name}: model {layout.model}, the manifest says {manifest.get('model')}")


def _check_layout_column(manifest: dict[str, Any], networks: pd.DataFrame, problems: list[str]) -> None:
    sizes = layout_sizes(manifest)
    bad = networks.loc[~networks["layout_id"].isin(list(sizes)), "net_id"].tolist()
    if bad:
        said = repr(next(iter(sizes))) if len(sizes) == 1 else f"layouts {list(sizes)}"
        problems.append(f"{NETWORKS_FILE}: {len(bad)} rows have a layout_id other than the "
                        f"manifest's {said} ({_ids(bad)})")


def verify_dataset(path: Path | str | Dataset) -> VerifyReport:
    """Check the finished dataset at `path` (or an opened one, from its files) end to end;
    DatasetError only if it is not a dataset."""
    root = path.path if isinstance(path, Dataset) else Path(path)
    manifest = read_manifest(root)
    if not manifest.get("finalized") or not isinstance(manifest.get("files"), dict):
        return VerifyReport(ok=False, problems=[
            f"{MANIFEST_FILE}: the dataset is not finalized, so there is nothing to verify yet"])
    problems: list[str] = []
    n_checked = _check_files(root, manifest["files"], problems)
    _check_layouts(root, manifest, problems)
    networks = _check_networks(root, manifest, problems)
    if networks is not None:
        _check_history(root, networks, problems)
    _check_staging(root, networks, problems)
    _check_manifest(root, manifest, networks, problems)
    _check_data(root, manifest, problems)
    problems = list(dict.fromkeys(problems))  # one missing file fails several checks
    return VerifyReport(ok=not problems, problems=problems,
                        n_networks=0 if networks is None else len(networks),
                        n_files_checked=n_checked)
