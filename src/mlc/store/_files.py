"""Crash-safe file primitives shared by the store: atomic writes, JSON, hashing.

A dataset directory must never hold a half-written file under its final name, because a reader (or a
resumed writer) believes whatever it finds there. Every file is therefore written to a temporary
name in the same directory, fsynced, and moved into place in one step; the directory is fsynced so
the move itself survives a power cut.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlc._storage import storage_errors
from mlc.errors import ConfigError, DatasetError

__all__ = [
    "TMP_PREFIX",
    "atomic_path",
    "create_exclusive",
    "file_sha256",
    "new_build_dir",
    "read_json",
    "remove_stale_temps",
    "write_atomic",
    "write_json",
]

TMP_PREFIX = ".tmp-"  # files with this prefix are unfinished writes; a crash may leave them behind


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_beside(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp's 0600 would hide a shared or released dataset from others
    return Path(name)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and moved onto `path`.

    For writers that want a file name rather than bytes (pyarrow's Parquet writer). A full disk or an
    unwritable folder is an mlc.errors error naming `path`.
    """
    with storage_errors(path):
        tmp = _temp_beside(path)
        try:
            yield tmp
            _fsync_file(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` all-or-nothing, replacing any previous version."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def create_exclusive(path: Path, data: bytes) -> bool:
    """Write `data` to `path` all-or-nothing unless `path` exists; True if this call created it.

    A hard link never replaces its target, so two racing writers cannot both believe they stored the
    file, and an existing file is never silently overwritten (which `os.replace` would do).
    """
    with storage_errors(path):
        tmp = _temp_beside(path)
        try:
            tmp.write_bytes(data)
            _fsync_file(tmp)
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
    return True


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON (stable bytes for the same content)."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(path, text.encode())


def read_json(path: Path) -> Any:
    """Parse a JSON file, translating a missing or malformed file into a DatasetError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is unreadable or not valid JSON ({exc})") from None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks so large weight shards need little memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_build_dir(final: Path, purpose: str) -> Path:
    """An empty directory beside `final` to build it in, renamed onto `final` when complete.

    Build directories that an interrupted run left behind (same `final`, same `purpose`) are removed
    first, so a crash leaves no lasting debris.
    """
    if final.parent.exists() and not final.parent.is_dir():
        raise ConfigError(f"{final.parent} is a file, where a folder should be")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a folder should be, no permission, a read-only file system
        raise ConfigError(f"cannot make the folder {final.parent}: {exc.strerror or exc}") from exc
    prefix = f".{final.name}.{purpose}-"
    for stale in final.parent.glob(f"{prefix}*"):
        shutil.rmtree(stale, ignore_errors=True)
    with storage_errors(final.parent):
        build = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
        build.chmod(0o755)
    return build


def remove_stale_temps(directory: Path) -> None:
    """Delete temporary files an interrupted write left in `directory` (never finished files)."""
    for tmp in directory.glob(f"{TMP_PREFIX}*"):
        tmp.unlink(missing_ok=True)
