"""Release exports: a subset of a finished dataset (the first N networks of each task) as its own
dataset directory, a `.tar.xz` of that directory, and a `sha256sum` file for the archive.

The subset is written through the same consolidation as the full dataset, so a release reads with
`mlc.dataset.open` like any dataset, and it is verified before it is archived: a corrupted source is
refused rather than shipped.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mlc.errors import ConfigError, DatasetError
from mlc.store._consolidate import TaskBatch, consolidate, input_files, now_utc
from mlc.store._files import atomic_path, file_sha256, new_build_dir, read_json, write_atomic
from mlc.store._format import (
    CONFIG_FILE,
    HISTORY_FILE,
    NETWORKS_FILE,
    check_name,
    dataset_containing,
)
from mlc.store._reader import Dataset, open_dataset, read_table
from mlc.store._verify import verify_dataset

__all__ = ["ExportResult", "default_export_name", "export_dataset"]

_SUBSET_RULE = "the first {n} networks of each task, in index order"


@dataclass(frozen=True)
class ExportResult:
    """Where an export went: the release directory, its archive, the archive's checksum file, the
    archive's SHA-256, and how many networks each task got."""

    directory: Path
    archive: Path
    sha256_file: Path
    sha256: str
    counts: dict[str, int]


def default_export_name(preset: str, per_task: int) -> str:
    """`mlds-ds1` with 100 per task -> `MLDS-DS1-100`, the spec's release names."""
    return f"{preset.upper()}-{per_task}"


def _take_first(networks: pa.Table, tasks: list[str], per_task: int,
                allow_short: bool) -> dict[str, pa.Table]:
    """Each task's first `per_task` rows by index; DatasetError if a task falls short."""
    chosen, short = {}, []
    for task in tasks:
        rows = networks.filter(pc.equal(networks["task"], task))
        rows = rows.take(pc.sort_indices(rows, [("index", "ascending")])).slice(0, per_task)
        if rows.num_rows < per_task:
            short.append(f"{task} has {rows.num_rows}")
        chosen[task] = rows
    if short and not allow_short:
        raise DatasetError(f"cannot export {per_task} networks per task: {'; '.join(short)}. "
                           "Wait for more networks, export fewer per task, or pass "
                           "--allow-short (allow_short=True in Python) to export what there is")
    return chosen


def _batches(ds: Dataset, chosen: dict[str, pa.Table]) -> Iterator[TaskBatch]:
    history = read_table(ds.file(HISTORY_FILE))
    for task, rows in chosen.items():
        ids, layout_ids = rows["net_id"].to_pylist(), rows["layout_id"].to_pylist()
        weights = {}
        for layout_id in dict.fromkeys(layout_ids):  # each layout's networks, in table order
            weights[layout_id] = ds.weights(net_ids=[i for i, k in zip(ids, layout_ids, strict=True)
                                                     if k == layout_id])
        yield TaskBatch(task, rows.drop_columns(["shard", "shard_row"]),
                        history.filter(pc.is_in(history["net_id"], value_set=rows["net_id"])), weights)


def _subset_manifest(source: dict[str, Any], name: str, per_task: int) -> dict[str, Any]:
    keep = ("format", "preset", "spec_version", "model", "layout_id", "n_params", "layouts", "tasks",
            "data", "data_hashes")
    return {**{k: source[k] for k in keep if k in source}, "name": name, "created": now_utc(),
            "finalized": None,
            "subset": {"of": source["name"], "per_task": per_task,
                       "rule": _SUBSET_RULE.format(n=per_task),
                       "source_finalized": source["finalized"]}}


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Archive entries carry no local user names or odd permissions."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def _archive(directory: Path, archive: Path) -> str:
    """Write `<directory>.tar.xz`, entries under the directory's name; return its SHA-256."""
    with atomic_path(archive) as tmp, tarfile.open(tmp, "w:xz") as tar:
        # add() recurses in sorted order, so the entry order depends on the names alone
        tar.add(directory, arcname=directory.name, filter=_normalise)
    return file_sha256(archive)


def export_dataset(src: Path | str | Dataset, out_dir: Path | str, *, per_task: int,
                   name: str | None = None, allow_short: bool = False) -> ExportResult:
    """Write the release `out_dir/<name>/`, `out_dir/<name>.tar.xz` and its `.sha256` file.

    `name` defaults to `<PRESET>-<per_task>` (e.g. `MLDS-DS1-100`). Refuses to overwrite anything,
    and refuses a task with fewer than `per_task` networks unless `allow_short`.
    """
    ds = src if isinstance(src, Dataset) else open_dataset(src)
    if isinstance(per_task, bool) or not isinstance(per_task, int) or per_task < 1:
        raise ConfigError(f"per_task must be a positive integer, got {per_task!r}")
    given, name = name, name or default_export_name(ds.manifest["preset"], per_task)
    try:
        check_name("export name", name)
    except DatasetError as exc:
        if given:
            raise
        raise DatasetError(f"{exc}; the preset's name made it: choose one (--name, name= in Python)"
                           ) from None
    out = Path(out_dir)
    inside = dataset_containing(out)
    if inside is not None:  # the release's files would break that dataset's verification
        raise DatasetError(f"{out} is in the dataset {inside}: write the release into a folder of its own")
    directory, archive = out / name, out / f"{name}.tar.xz"
    sha_file = archive.with_name(archive.name + ".sha256")
    taken = [str(p) for p in (directory, archive, sha_file) if p.exists()]
    if taken:
        raise DatasetError(f"export target already exists: {', '.join(taken)}; remove it or pick "
                           "another name")
    chosen = _take_first(read_table(ds.file(NETWORKS_FILE)), list(ds.tasks), per_task, allow_short)
    tmp = new_build_dir(directory, "exporting")
    try:
        names = input_files(ds.manifest)
        inputs = {fixed: ds.manifest["files"].get(fixed) for fixed in names}
        for fixed in names:
            (tmp / fixed).parent.mkdir(exist_ok=True)
            shutil.copyfile(ds.path / fixed, tmp / fixed)
            if file_sha256(tmp / fixed) != inputs[fixed]:
                raise DatasetError(f"{ds.path / fixed} does not match its SHA-256 in the manifest; "
                                   "the source is damaged (run `mlc dataset verify` on it)")
        consolidate(tmp, _subset_manifest(ds.manifest, name, per_task),
                    read_json(ds.file(CONFIG_FILE)), _batches(ds, chosen), inputs)
        report = verify_dataset(tmp)
        if not report.ok:
            raise DatasetError(f"the export of {ds.path} fails verification, so the source is "
                               f"damaged: {'; '.join(report.problems)}")
        tmp.rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    digest = _archive(directory, archive)
    write_atomic(sha_file, f"{digest}  {archive.name}\n".encode())
    return ExportResult(directory, archive, sha_file, digest,
                        {task: rows.num_rows for task, rows in chosen.items()})
