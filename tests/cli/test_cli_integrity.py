"""A damaged dataset file through the command line: `info`, `verify` and `analyze` each say which
file in one line (a flipped byte in networks.parquet was a UnicodeDecodeError traceback in all three)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlc.executors import LocalExecutor
from mlc.work import load_preset

SRC = str(Path(__file__).parents[2] / "src")


def mlc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC, COLUMNS="400")
    return subprocess.run([sys.executable, "-m", "mlc", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_a_damaged_networks_table_is_one_line_in_info_verify_and_analyze(tiny_preset, tmp_path):
    summary = LocalExecutor(tmp_path / "w", torch.device("cpu")).run(load_preset(str(tiny_preset)))
    dataset = summary.dataset_dir
    table = dataset / "networks.parquet"
    data = bytearray(table.read_bytes())
    data[data.index(b"net_id", data.index(b"\x06schema"))] ^= 0x80  # a column name no longer UTF-8
    table.write_bytes(bytes(data))
    for args, rc in ((["dataset", "info", str(dataset)], 2), (["dataset", "verify", str(dataset)], 1),
                     (["analyze", str(dataset), "--out", str(tmp_path / "report")], 2)):
        done = mlc(*args, cwd=tmp_path)
        assert done.returncode == rc, done.stderr
        assert "Traceback" not in done.stderr and "networks.parquet" in done.stderr, done.stderr
    assert "does not match its SHA-256 in the manifest" in mlc("dataset", "info", str(dataset),
                                                               cwd=tmp_path).stderr
    assert not (tmp_path / "report").exists()  # no report written from a damaged table
