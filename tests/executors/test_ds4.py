"""DS4 end to end: `ds4-smoke` (CNNs on the 8x8 digits, clean and BadNets-poisoned) through the
coordinator, work units, validation and assimilation into a dataset whose networks carry their
clean accuracy and attack success rate."""

import numpy as np
import torch

import mlc.dataset
import mlc.models
from mlc.executors import LocalExecutor
from mlc.work import load_preset


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
