"""What this process may use of its host: CPUs and memory, container limits included.

A volunteer's worker often runs in a container (Docker, a BOINC wrapper, a batch system's cgroup)
on a large host. The CPU affinity and the host's free memory then overstate what it may use: a
cgroup's CPU quota and memory limit are what count, and training sized by the host (64 networks per
thread on a 64-core host, at ~1.5 MiB each) would be killed for memory. Both cgroup versions are
read, with every ancestor's limit (a parent's may be the tighter one); where none applies, the
affinity and the free memory stand.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["available_memory", "usable_cpus"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")
_FALLBACK_MEMORY = 8 << 30  # where the OS says nothing (not Linux, no sysconf)


def usable_cpus(root: Path = _CGROUP_ROOT, proc_cgroup: Path = _PROC_CGROUP) -> int:
    """CPUs this process may run on: its affinity, lowered to its cgroup's CPU quota (rounded up)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    for quota in _limits(root, proc_cgroup, "cpu", _cpu_quota):
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def available_memory(root: Path = _CGROUP_ROOT, proc_cgroup: Path = _PROC_CGROUP) -> int:
    """Bytes this process could still allocate: the host's free memory, lowered to what its cgroup's
    memory limit leaves (limit minus usage)."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = _FALLBACK_MEMORY
    for left in _limits(root, proc_cgroup, "memory", _memory_left):
        free = min(free, max(0, int(left)))
    return free


def _cgroup_dirs(root: Path, proc_cgroup: Path, v1_controller: str) -> list[tuple[Path, int]]:
    """(directory, cgroup version) of this process's cgroup and each ancestor up to the mount, for
    each version present. A path the container does not show (namespaced) leaves the mount itself."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base, version = (root / "unified" if (root / "unified").is_dir() else root), 2
        elif v1_controller in controllers.split(","):
            base, version = root / v1_controller, 1
        else:
            continue
        leaf = base / path.lstrip("/")
        dirs = [leaf, *leaf.parents] if leaf.is_dir() else [base]
        found += [(d, version) for d in dirs if d == base or base in d.parents]
    return found


def _limits(
    root: Path, proc_cgroup: Path, v1_controller: str, parse: Callable[[Path, int], float | None]
) -> list[float]:
    """Every limit that applies: `parse(directory, version)` of each level, where it sets one."""
    limits = (parse(d, version) for d, version in _cgroup_dirs(root, proc_cgroup, v1_controller))
    return [limit for limit in limits if limit is not None]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpu_quota(directory: Path, version: int) -> float | None:
    """CPUs' worth of time per period, or None for no quota."""
    if version == 2:
        fields = (_read(directory / "cpu.max") or "max").split()
        quota, period = fields[0], fields[1] if len(fields) > 1 else "100000"
    else:
        quota = _read(directory / "cpu.cfs_quota_us") or "-1"
        period = _read(directory / "cpu.cfs_period_us") or "100000"
    if quota == "max" or int(quota) < 0 or int(period) <= 0:
        return None
    return int(quota) / int(period)


def _memory_left(directory: Path, version: int) -> float | None:
    """Limit minus usage in bytes, or None for no limit."""
    if version == 2:
        limit, usage = _read(directory / "memory.max"), _read(directory / "memory.current")
    else:
        limit, usage = _read(directory / "memory.limit_in_bytes"), _read(directory / "memory.usage_in_bytes")
    if limit is None or limit == "max" or int(limit) >= 1 << 62:  # v1 writes "no limit" as ~2^63
        return None
    return int(limit) - int(usage or 0)
