"""Resources as a user meets them: impossible presets refused before anything is allocated, a full
disk and a read-only workdir as one-line errors, and a resume after space returns.

The full disk is a real one: a small tmpfs mounted in a user and mount namespace (`unshare -rm`,
which needs no root), where `mlc run` fills it and the run is resumed after a remount makes room. The
read-only workdir is a read-only bind mount in such a namespace, since chmod does not stop root. A
full disk while the store writes (a staged network, finalize's Parquet) is simulated in process by an
OSError(ENOSPC) from the write, as a file system raises it."""

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mlc.dataset
import mlc.store._consolidate as consolidate
from mlc.errors import ConfigError, DiskFull, StateError
from mlc.executors import LocalExecutor
from mlc.store import DatasetWriter
from mlc.store._files import create_exclusive
from mlc.work import check_resources, load_preset

SRC = str(Path(__file__).parents[2] / "src")


def _namespaces_missing() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1) here"
    done = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True)
    return None if done.returncode == 0 else f"no user namespaces here: {done.stderr.strip()}"


needs_namespaces = pytest.mark.skipif(_namespaces_missing() is not None,
                                      reason=str(_namespaces_missing()))


def in_namespace(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the shell `script` as "root" of a new user and mount namespace; $MLC runs the CLI."""
    env = dict(os.environ, PYTHONPATH=SRC, COLUMNS="300", MLC=f"{sys.executable} -m mlc")
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_impossible_presets_are_refused_naming_the_setting(tiny_preset, tmp_path):
    config = load_preset(str(tiny_preset))
    huge = load_preset(str(tiny_preset), {"networks_per_task": 10**12})
    with pytest.raises(ConfigError,
                       match=r"networks_per_task is too large .* memory .*\(--networks-per-task\)"):
        check_resources(huge)
    with pytest.raises(ConfigError, match=r"train.max_epochs is too large .* of disk .*\(--max-epochs\)"):
        check_resources(load_preset(str(tiny_preset), {"train.max_epochs": 10**9}), tmp_path, disk=10**9)
    with pytest.raises(ConfigError, match=r"networks_per_task is too large .* of disk"):
        check_resources(config, tmp_path, disk=10_000)
    check_resources(config, tmp_path, n_stored=4, disk=60_000)  # a resume needs only its data file
    with pytest.raises(ConfigError, match=r"data.n_train is too large for this machine: .* memory"):
        load_preset(str(tiny_preset), {"data.n_train": 10**12})  # before numpy tries to allocate it
    with pytest.raises(ConfigError, match="networks_per_task is too large"):
        LocalExecutor(tmp_path / "w", torch.device("cpu")).run(huge)
    assert not (tmp_path / "w").exists()  # refused before anything was written


def test_a_binary_preset_file_is_a_clear_error(tmp_path):
    preset = tmp_path / "binary.toml"
    preset.write_bytes(b"name = \"x\"\n\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(ConfigError, match=r"binary.toml is not a TOML text file \(byte 11 is not UTF-8"):
        load_preset(str(preset))


@needs_namespaces
def test_a_full_disk_ends_a_run_in_one_line_and_a_resume_after_space_returns_finishes_it(
        tiny_preset, tmp_path):
    script = f"""
        mkdir -p disk && mount -t tmpfs -o size=1200k tmpfs disk || exit 90
        $MLC run {tiny_preset} --workdir disk/w --no-analyze > full.out 2> full.err; echo $? > full.rc
        mount -o remount,size=64m disk
        $MLC run {tiny_preset} --workdir disk/w --no-analyze > resumed.out 2>&1 || exit 91
        $MLC run {tiny_preset} --workdir disk/reference --no-analyze > /dev/null 2>&1 || exit 92
        cp -r disk/w/dataset resumed && cp -r disk/reference/dataset reference
    """
    done = in_namespace(script, tmp_path)
    assert done.returncode == 0, done.stderr
    err = (tmp_path / "full.err").read_text()
    assert (tmp_path / "full.rc").read_text().strip() == "2"
    assert "Traceback" not in err
    assert "error: the disk holding" in err and "is full (" in err and "B free)" in err
    assert "re-run the same command to resume" in err
    resumed, reference = mlc.dataset.open(tmp_path / "resumed"), mlc.dataset.open(tmp_path / "reference")
    assert mlc.dataset.verify(resumed).ok
    np.testing.assert_array_equal(resumed.weights(), reference.weights())
    assert resumed.history.equals(reference.history)


@needs_namespaces
def test_a_read_only_workdir_is_one_line_for_run_and_status(tiny_preset, tmp_path):
    LocalExecutor(tmp_path / "w", torch.device("cpu")).run(load_preset(str(tiny_preset)))
    script = f"""
        mount --bind w w && mount -o remount,bind,ro w || exit 90
        $MLC run {tiny_preset} --workdir w --no-analyze > run.out 2> run.err; echo $? > run.rc
        $MLC status --workdir w > status.out 2> status.err; echo $? > status.rc
        $MLC dataset verify w/dataset > verify.out 2>&1; echo $? > verify.rc
    """
    done = in_namespace(script, tmp_path)
    assert done.returncode == 0, done.stderr
    run_err = (tmp_path / "run.err").read_text()
    assert (tmp_path / "run.rc").read_text().strip() == "2", run_err
    assert "error: cannot write w: read-only file system; make it writable" in run_err.replace("\n", "")
    status = (tmp_path / "status.out").read_text() + (tmp_path / "status.err").read_text()
    assert "Traceback" not in status and len(status.strip().splitlines()) == 1, status  # one line
    assert "w/mlc.db (or its folder): SQLite says unable to open database file" in status
    assert (tmp_path / "verify.rc").read_text().strip() == "0"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes whatever the mode says; the read-only bind "
                    "mount test covers root")
def test_a_workdir_without_write_permission_is_one_error(tiny_preset, tmp_path):
    (tmp_path / "w").mkdir(mode=0o500)
    with pytest.raises(StateError, match="cannot write .*w: permission denied"):
        LocalExecutor(tmp_path / "w", torch.device("cpu")).run(load_preset(str(tiny_preset)))


def _enospc(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_staging_or_finalizing_is_disk_full_and_nothing_is_lost(
        tmp_path, monkeypatch, tiny_preset):
    first = LocalExecutor(tmp_path / "w", torch.device("cpu")).run(load_preset(str(tiny_preset)))
    before = mlc.dataset.open(first.dataset_dir).weights()
    writer = DatasetWriter.open(first.dataset_dir)
    with monkeypatch.context() as patch:
        patch.setattr(consolidate.pq, "write_table", _enospc)  # finalize's networks.parquet
        with pytest.raises(DiskFull, match=r"the disk holding .*networks.parquet is full \(.* free\)"):
            writer.finalize()
    assert not list(first.dataset_dir.glob(".tmp-*"))  # no half-written file left to fill the disk
    writer.finalize()  # space is back
    np.testing.assert_array_equal(mlc.dataset.open(first.dataset_dir).weights(), before)
    assert mlc.dataset.verify(first.dataset_dir).ok
    with monkeypatch.context() as patch:
        patch.setattr(os, "link", _enospc)  # how a staged network's file lands
        with pytest.raises(DiskFull, match=r"the disk holding .*staging/x.safetensors is full"):
            create_exclusive(first.dataset_dir / "staging" / "x.safetensors", b"record")
    assert sorted(p.name for p in (first.dataset_dir / "staging").iterdir()) == sorted(
        f"{net}.safetensors" for net in mlc.dataset.open(first.dataset_dir).networks["net_id"])
