"""Storage failures as one-line errors: a full disk or a read-only folder says where and how much.

A full disk at any write (a dataset file, a checkpoint, the SQLite database) loses nothing that was
stored, since every write is atomic and every state change one transaction, so the message only has
to say where, how much space is left, and that re-running resumes. A folder that cannot be written
(read-only file system, no permission) is a permanent error naming it.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlc.errors import DiskFull, MLCError, StateError

__all__ = [
    "disk_full",
    "free_bytes",
    "human_bytes",
    "storage_error",
    "storage_errors",
    "unwritable",
    "writable_dir",
]

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def free_bytes(path: Path | str) -> int | None:
    """Free bytes on the file system holding `path` (its nearest existing ancestor); None if unknown."""
    here = Path(path).absolute()
    for candidate in (here, *here.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def disk_full(path: Path | str, needed: int | None = None) -> DiskFull:
    free = free_bytes(path)
    left = "unknown space" if free is None else human_bytes(free)
    need = f", {human_bytes(needed)} needed" if needed else ""
    return DiskFull(f"the disk holding {path} is full ({left} free{need}): free some space there, then "
                    "re-run the same command to resume (nothing stored was lost)")


def unwritable(path: Path | str, reason: str) -> StateError:
    return StateError(f"cannot write {path}: {reason}; make it writable, or work somewhere else "
                      "(for `mlc run`, another --workdir)")


def storage_error(exc: OSError, path: Path | str) -> MLCError | None:
    """The one-line error for `exc` raised writing `path`, or None if it is no storage condition."""
    where = exc.filename or path
    text = str(exc).lower()
    if exc.errno in _FULL or "no space left" in text or "disk quota" in text:
        return disk_full(where)
    if exc.errno in _UNWRITABLE or "read-only file system" in text:
        read_only = exc.errno == errno.EROFS or "read-only" in text
        return unwritable(where, "read-only file system" if read_only else "permission denied")
    return None


@contextmanager
def storage_errors(path: Path | str) -> Iterator[None]:
    """Translate a full disk or an unwritable folder met while writing `path` into mlc.errors."""
    try:
        yield
    except OSError as exc:
        translated = storage_error(exc, path)
        if translated is None:
            raise
        raise translated from exc


def writable_dir(path: Path) -> None:
    """StateError unless files can be created in the existing folder `path` (root ignores modes, so
    this asks the OS by access() and the file system's read-only flag rather than trusting the mode)."""
    if os.statvfs(path).f_flag & os.ST_RDONLY:
        raise unwritable(path, "read-only file system")
    if not os.access(path, os.W_OK | os.X_OK):
        raise unwritable(path, "permission denied")
