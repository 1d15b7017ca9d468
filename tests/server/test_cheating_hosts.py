"""A malicious worker, one way of cheating per test, as a real process beside a real server: each is
caught (by re-evaluation, segment replay, or the upload check), the host is marked untrusted, and
nothing it produced stays in the dataset: an honest worker then builds exactly the local run's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from server_setup import SMALL_PRESET, env_with_src

import mlc.dataset
from mlc.executors import LocalExecutor
from mlc.work import preset_from_text

pytestmark = pytest.mark.slow

# units of 4 epochs in 4 segments (the server cuts them as it would any submitted experiment), on
# sequences long enough that the trojan's key occurs (at 12 steps the twins' targets are identical)
PRESET = SMALL_PRESET.replace("epochs_per_wu = 2", "epochs_per_wu = 4").replace("length = 12", "length = 40")
_SAME = ["net_id", "task", "index", "net_seed", "epochs", "converged", "weights_sha256"]


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory: pytest.TempPathFactory) -> mlc.dataset.Dataset:
    summary = LocalExecutor(tmp_path_factory.mktemp("local"), "cpu", threads=1).run(preset_from_text(PRESET))
    return mlc.dataset.open(summary.dataset_dir)


@pytest.mark.parametrize("mode", ["poison", "lazy", "fewer", "one_segment", "swap"])
def test_a_cheating_host_is_caught_and_nothing_it_made_stays(
    server, start_worker, tmp_path, mode, local_dataset
):
    server.submit(PRESET)
    script = Path(__file__).with_name("malicious_worker.py")
    log = tmp_path / "cheat.log"
    with log.open("wb") as out:
        cheat = subprocess.run(
            [sys.executable, str(script), server.url, str(tmp_path / "cheat"), mode],
            env=env_with_src(),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    assert cheat.returncode != 0 and "gets no more work" in log.read_text(), log.read_text()[-3000:]
    with server.admin() as admin:
        (host,) = admin.get("/admin/hosts").json()
    assert host["trust"] == "untrusted"
    honest = start_worker(server, "honest", "--exit-when-idle")
    assert honest.wait(timeout=300) == 0
    info = server.wait_finished("small", timeout=120)
    assert info["finished"] == info["n_networks"] and info["failed"] == 0
    got = mlc.dataset.open(info["dataset_dir"])
    pd.testing.assert_frame_equal(local_dataset.networks[_SAME], got.networks[_SAME])
    np.testing.assert_array_equal(local_dataset.weights(), got.weights())
