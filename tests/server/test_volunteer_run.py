"""End to end on loopback: a real server and real workers finish a small DS1+DS2 preset, and the
dataset they build is the one a local `mlc run` builds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from server_setup import SMALL_PRESET

import mlc.dataset
from mlc.executors import LocalExecutor
from mlc.work import preset_from_text

pytestmark = pytest.mark.slow

_SAME = ["net_id", "task", "index", "net_seed", "epochs", "converged", "final_val_loss", "weights_sha256"]


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory: pytest.TempPathFactory) -> mlc.dataset.Dataset:
    workdir = tmp_path_factory.mktemp("local")
    summary = LocalExecutor(workdir, "cpu", threads=1).run(preset_from_text(SMALL_PRESET))
    return mlc.dataset.open(summary.dataset_dir)


def test_three_workers_build_the_local_runs_dataset(server, start_worker, local_dataset):
    info = server.submit()
    workers = [start_worker(server, f"w{i}", "--exit-when-idle") for i in range(3)]
    for proc in workers:
        assert proc.wait(timeout=300) == 0
    info = server.wait_finished("small", timeout=60)
    assert info["finished"] == info["n_networks"] == 8 and info["failed"] == 0
    assert mlc.dataset.verify(info["dataset_dir"]).ok
    got = mlc.dataset.open(info["dataset_dir"])
    # the same networks, trained by the same C kernels: the same weights, bit for bit
    pd.testing.assert_frame_equal(local_dataset.networks[_SAME], got.networks[_SAME])
    np.testing.assert_array_equal(local_dataset.weights(), got.weights())
    pd.testing.assert_frame_equal(local_dataset.history, got.history)
    with server.admin() as admin:
        registered = admin.get("/admin/hosts").json()
    assert sorted(h["name"] for h in registered) == ["w0", "w1", "w2"]
    # provenance as the server knows it: each unit's host (by its registered id) and its checking
    ids = {f"host:{h['host_id']}" for h in registered}
    for row in got.networks.itertuples():
        trained_by, replayed = json.loads(row.trained_by), json.loads(row.replayed_segments)
        assert len(trained_by) == len(replayed) == len(json.loads(row.work_units)) == 2
        # by one host, or two where a replica (new hosts: every unit a peer of their class can take) agreed
        assert {h for unit in trained_by for h in unit.split("+")} <= ids
        # the server cut the units into segments; every one was replayed for a host still new
        assert all(r.endswith("/2") for r in replayed), replayed
        assert row.confirmed == all(r == "2/2" or "+" in t for r, t in zip(replayed, trained_by, strict=True))
    assert (local_dataset.networks["trained_by"] == '["local","local"]').all()
    assert local_dataset.networks["confirmed"].all()
    assert (local_dataset.networks["replayed_segments"] == '["0/1","0/1"]').all()


WIDTH_BY_DEPTH = """
name = "layouts"
model = "digits-mlp"
spec_version = "ds4-1"
seed = 5
tasks = ["DigitsClean", "DigitsBadNets"]
networks_per_task = 1
networks_per_wu = 1
epochs_per_wu = 1

[data]
seed = 2
n_train = 120
n_val = 60

[train]
lr = 3e-2
batch_size = 32
max_epochs = 2

[model_settings]
width = [4, 8]
depth = [1, 2]
"""


def test_a_width_by_depth_sweep_trains_on_a_worker_into_four_layouts(server, start_worker, tmp_path):
    """Nothing new on the server or the worker: each unit's spec names its variant's layout, the
    validator replays it in that layout, and the dataset keeps each layout's weights apart, as a
    local run does."""
    server.submit(WIDTH_BY_DEPTH)
    assert start_worker(server, "w0", "--exit-when-idle").wait(timeout=300) == 0
    info = server.wait_finished("layouts", timeout=60)
    assert info["finished"] == info["n_networks"] == 8 and info["failed"] == 0
    got = mlc.dataset.open(info["dataset_dir"])
    assert mlc.dataset.verify(got).ok and len(got.layouts) == 4
    local = mlc.dataset.open(LocalExecutor(tmp_path / "local", "cpu", threads=1).run(
        preset_from_text(WIDTH_BY_DEPTH)).dataset_dir)
    assert list(got.layouts) == list(local.layouts)
    pd.testing.assert_frame_equal(local.networks[[*_SAME, "layout_id", "width", "depth"]],
                                  got.networks[[*_SAME, "layout_id", "width", "depth"]])
    for layout_id in got.layouts:
        np.testing.assert_array_equal(local.weights(layout=layout_id), got.weights(layout=layout_id))
