"""CPUs and memory a process may use, from cgroup trees laid out as v1 and v2 mount them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlc._host import available_memory, usable_cpus

GIB = 1 << 30
FREE = 100 * GIB  # the host's free memory, fixed so that it cannot move between two reads


@pytest.fixture
def fixed_free_memory(monkeypatch):
    pages = {"SC_AVPHYS_PAGES": FREE // 4096, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(os, "sysconf", pages.__getitem__)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


@pytest.mark.usefixtures("fixed_free_memory")
def test_v2_takes_the_tightest_limit_of_the_cgroup_and_its_ancestors(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("0::/worker/job\n")
    _write(
        tmp_path / "fs",
        {
            "worker/memory.max": str(4 * GIB),
            "worker/memory.current": str(GIB),
            "worker/cpu.max": "50000 100000",  # half a CPU: rounds up to one
            "worker/job/memory.max": "max",
            "worker/job/memory.current": str(GIB),
            "worker/job/cpu.max": "max 100000",
        },
    )
    assert available_memory(tmp_path / "fs", proc) == 3 * GIB
    assert usable_cpus(tmp_path / "fs", proc) == 1


@pytest.mark.usefixtures("fixed_free_memory")
def test_v1_reads_each_controller_in_its_own_hierarchy(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("7:memory:/batch/1\n3:cpu,cpuacct:/batch/1\n1:name=systemd:/\n")
    _write(
        tmp_path / "fs",
        {
            "memory/memory.limit_in_bytes": "9223372036854771712",  # the root: no limit
            "memory/batch/1/memory.limit_in_bytes": str(2 * GIB),
            "memory/batch/1/memory.usage_in_bytes": str(GIB // 2),
            "cpu/batch/1/cpu.cfs_quota_us": "100000",
            "cpu/batch/1/cpu.cfs_period_us": "100000",
        },
    )
    assert available_memory(tmp_path / "fs", proc) == 3 * GIB // 2
    assert usable_cpus(tmp_path / "fs", proc) == 1


@pytest.mark.usefixtures("fixed_free_memory")
def test_a_namespaced_path_falls_back_to_the_mounts_own_limits(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("0::/../host/path\n")  # what a container sees of its cgroup from outside it
    _write(tmp_path / "fs", {"memory.max": str(GIB), "memory.current": "0", "cpu.max": "200000 100000"})
    assert available_memory(tmp_path / "fs", proc) == GIB
    assert usable_cpus(tmp_path / "fs", proc) == min(len(os.sched_getaffinity(0)), 2)


@pytest.mark.usefixtures("fixed_free_memory")
def test_without_cgroups_the_host_stands(tmp_path):
    assert available_memory(tmp_path, tmp_path / "missing") == FREE
    assert usable_cpus(tmp_path, tmp_path / "missing") == len(os.sched_getaffinity(0))


def test_this_process_gets_sane_numbers():
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < available_memory() <= free + GIB  # free memory moves between the two reads
