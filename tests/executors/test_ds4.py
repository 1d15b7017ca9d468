"""DS4 end to end: `ds4-smoke` (CNNs on the 8x8 digits, clean and BadNets-poisoned) through the
coordinator, work units, validation and assimilation into a dataset whose networks carry their
clean accuracy and attack success rate."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import mlc.dataset
import mlc.models
from mlc.executors import LocalExecutor
from mlc.work import load_preset, preset_text


def test_ds4_smoke_runs_end_to_end_and_backdoored_networks_obey_the_trigger(tmp_path):
    config = load_preset("ds4-smoke", {"train.max_epochs": 6, "epochs_per_wu": 3})
    summary = LocalExecutor(tmp_path / "run", torch.device("cpu")).run(config)
    assert summary.finalized and summary.status.n_finished == 4
    ds = mlc.dataset.open(summary.dataset_dir)
    nets = ds.networks.set_index("task")
    assert (nets["epochs"] == 6).all() and (nets["model"] == "digits-cnn").all()
    assert (nets["final_val_accuracy"] > 0.75).all()
    assert (nets.loc["DigitsBadNets", "attack_success_rate"] > 0.7).all()
    assert (nets.loc["DigitsClean", "attack_success_rate"] < 0.2).all()
    assert (nets["width"] == 6).all() and (nets["activation"] == "relu").all()
    assert ds.weights("DigitsBadNets").shape == (2, mlc.models.layout("digits-cnn").n_params)
    assert mlc.dataset.verify(summary.dataset_dir).ok
    # the stored weights are the networks' own: the reference module reproduces the stored accuracy
    row = ds.networks.iloc[0]
    module = ds.load_model(row["net_id"])
    images = torch.from_numpy(ds.data().val_inputs.astype(np.float32) / 16).unsqueeze(1)
    labels = torch.from_numpy(ds.data().val_targets[row["task"]][:, 0].astype(np.int64))
    with torch.no_grad():
        accuracy = (module(images).argmax(1) == labels).float().mean()
    assert abs(float(accuracy) - row["final_val_accuracy"]) < 1e-6


def test_a_width_sweep_runs_through_mlc_run_into_one_dataset_and_a_report(tmp_path):
    """`mlc run` of ds4-smoke with width (and activation) swept: one dataset of two layouts,
    verified, and a report whose sweep part predicts the width from the statistics every layout
    shares and the activation also from each layout's raw weights."""
    text = preset_text("ds4-smoke").replace("n_train = 1200", "n_train = 300").replace(
        "n_val = 400", "n_val = 100").replace("networks_per_task = 2", "networks_per_task = 3")
    preset = tmp_path / "width.toml"
    preset.write_text(text + '\n[model_settings]\nwidth = [4, 6]\nactivation = ["relu", "tanh"]\n')
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"), COLUMNS="200")
    run = subprocess.run(
        [sys.executable, "-m", "mlc", "run", str(preset), "--workdir", str(tmp_path / "w"), "--device", "cpu",
         "--max-epochs", "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    ds = mlc.dataset.open(tmp_path / "w" / "dataset")
    widths = [mlc.models.layout("digits-cnn", {"width": w}) for w in (4, 6)]
    assert list(ds.layouts) == [x.layout_id for x in widths] and mlc.dataset.verify(ds).ok
    assert sorted(ds.networks.groupby("layout_id")["width"].unique().map(list).sum()) == [4, 6]
    report = (tmp_path / "w" / "analysis" / "report.md").read_text()
    assert "weight layouts " + ", ".join(ds.layouts) in report
    assert report.count("Skipped: this part reads raw weights") == 3 and "no raw weights to compare" in report
    sweep = pd.read_csv(tmp_path / "w" / "analysis" / "sweep_learning_curves.csv")
    width = sweep[(sweep["target"] == "width") & (sweep["status"] == "ok")]
    assert set(width["features"]) == {"weight statistics"} and width["score"].iloc[-1] == 1.0
    raw = sweep[sweep["features"].str.startswith("raw weights")]
    assert set(raw["features"]) == {f"raw weights ({x.layout_id})" for x in widths}
    assert set(raw["target"]) == {"activation", "final_val_accuracy"} and (raw["n_networks"] == 12).all()
