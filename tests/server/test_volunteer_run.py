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
