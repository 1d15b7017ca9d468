"""Sweeps as data: lists in [train] and [model_settings] expand into variants (grid or random), and
each network trains with its own variant's settings, through the whole pipeline."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mlc.dataset
from mlc import models
from mlc.errors import ConfigError
from mlc.executors import LocalExecutor
from mlc.train import batch_order
from mlc.work import ExperimentConfig, preset_from_text

SWEEP = """
name = "sweep"
model = "digits-mlp"
spec_version = "ds4-1"
seed = 5
tasks = ["DigitsBadNets"]
networks_per_task = 1
networks_per_wu = 1
epochs_per_wu = 1
{sweep}

[data]
seed = 2
n_train = 120
n_val = 60

[train]
lr = [1e-3, 3e-2]
batch_size = 32
weight_decay = [0.0, 0.01]
max_epochs = 2

[model_settings]
activation = ["relu", "tanh"]
"""


def test_a_grid_expands_every_combination_as_written_and_round_trips():
    config = preset_from_text(SWEEP.format(sweep=""))
    combos = [(v.train.lr, v.train.weight_decay, v.model_settings["activation"]) for v in config.variants]
    assert combos == [(lr, wd, act) for lr in (1e-3, 3e-2) for wd in (0.0, 0.01) for act in ("relu", "tanh")]
    assert config.n_networks_per_task == 8
    assert ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.to_dict()["train"]["lr"] == [1e-3, 3e-2]


def test_a_random_sweep_draws_count_combinations_from_the_lists_by_its_seed():
    text = SWEEP.format(sweep='[sweep]\nmode = "random"\ncount = 5\nseed = 9')
    config = preset_from_text(text)
    assert len(config.variants) == 5 and config.variants == preset_from_text(text).variants
    assert {v.train.lr for v in config.variants} <= {1e-3, 3e-2}
    assert {v.model_settings["activation"] for v in config.variants} <= {"relu", "tanh"}
    other = preset_from_text(text.replace("seed = 9", "seed = 10"))
    assert [v.train for v in other.variants] != [v.train for v in config.variants]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("lr = [1e-3, 3e-2]", "lr = []", "empty list"),
        ("lr = [1e-3, 3e-2]", "lr = [1e-3, 1e-3]", "twice"),
        ('activation = ["relu", "tanh"]', "width = [4, 4.5]", "width must be a whole number"),
        ('activation = ["relu", "tanh"]', 'activation = ["relu", "swish"]', "activation"),
        ("{sweep}", '[sweep]\nmode = "random"', "count"),
        ("{sweep}", '[sweep]\nmode = "sideways"', "grid or random"),
        ("lr = [1e-3, 3e-2]", "lr = [1e-3, -1.0]", "lr must be positive"),
    ],
)
def test_malformed_sweeps_are_refused_by_name(old, new, message):
    with pytest.raises(ConfigError, match=message):
        preset_from_text(SWEEP.replace(old, new).format(sweep=""))


def _reference(net_seed, settings, train, data, task, epochs):
    """One network trained alone: its reference module, torch.optim.Adam, the same batch order."""
    module = models.get("digits-mlp", net_seed, settings)
    opt = torch.optim.Adam(module.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    images = torch.from_numpy(data.train_inputs.astype(np.float32) / 16).unsqueeze(1)
    targets = data.train_targets[task]
    triggered = targets[:, 1] > 0
    images[triggered, :, -2:, -2:] = 1.0  # the preset's default 2x2 trigger
    labels = torch.from_numpy(targets[:, 0].astype(np.int64))
    for epoch in range(epochs):
        order = torch.from_numpy(batch_order(net_seed, epoch, len(labels)))
        for start in range(0, len(labels), train.batch_size):
            idx = order[start : start + train.batch_size]
            opt.zero_grad()
            F.cross_entropy(module(images[idx]), labels[idx]).backward()
            opt.step()
    return models.flatten(module)


def test_each_network_of_a_sweep_trains_with_its_own_settings(tmp_path):
    text = SWEEP.format(sweep='[sweep]\nmode = "random"\ncount = 3\nseed = 5')  # both values of each
    config = preset_from_text(text)
    summary = LocalExecutor(tmp_path / "run", torch.device("cpu")).run(config)
    assert summary.finalized and summary.status.n_finished == 3
    ds = mlc.dataset.open(summary.dataset_dir)
    nets = ds.networks.sort_values("index").fillna({"weight_decay": 0.0})  # null: none was named
    assert list(nets["index"]) == [0, 1, 2]
    for (_, row), variant in zip(nets.iterrows(), config.variants, strict=True):
        assert (row["lr"], row["weight_decay"], row["activation"]) == (
            variant.train.lr, variant.train.weight_decay, variant.model_settings["activation"])
        assert len(json.loads(row["work_units"])) == 2  # a continuation keeps the unit's settings
        weights = torch.from_numpy(ds.weights(net_ids=[row["net_id"]])[0])
        expected = _reference(int(row["net_seed"]), variant.model_settings, variant.train, ds.data(),
                              row["task"], 2)
        torch.testing.assert_close(weights, expected, rtol=1e-4, atol=1e-5)


LAYOUTS = "width = [4, 8]\ndepth = [1, 2]"
LAYOUT_SWEEP = (SWEEP.replace("lr = [1e-3, 3e-2]", "lr = 3e-2").replace("weight_decay = [0.0, 0.01]", "")
                .replace('activation = ["relu", "tanh"]', LAYOUTS))


def test_a_width_by_depth_grid_expands_as_written_into_layouts_of_its_own():
    config = preset_from_text(LAYOUT_SWEEP.format(sweep=""))
    assert [v.model_settings for v in config.variants] == [
        {"depth": d, "width": w} for d in (1, 2) for w in (4, 8)]
    expected = [models.layout("digits-mlp", v.model_settings) for v in config.variants]
    assert config.layouts == tuple(expected) and len({x.layout_id for x in expected}) == 4
    assert ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    fixed = preset_from_text(LAYOUT_SWEEP.replace(LAYOUTS, "width = 8").format(sweep=""))
    assert fixed.sweep is None and fixed.layouts == (models.layout("digits-mlp", {"width": 8}),)


def test_each_network_of_a_width_by_depth_sweep_trains_in_its_own_layout(tmp_path):
    config = preset_from_text(LAYOUT_SWEEP.format(sweep=""))
    summary = LocalExecutor(tmp_path / "run", torch.device("cpu")).run(config)
    assert summary.finalized and summary.status.n_finished == 4
    ds = mlc.dataset.open(summary.dataset_dir)
    assert mlc.dataset.verify(ds).ok
    assert list(ds.layouts) == [x.layout_id for x in config.layouts]
    for (_, row), variant in zip(ds.networks.sort_values("index").iterrows(), config.variants, strict=True):
        assert {"width": row["width"], "depth": row["depth"]} == variant.model_settings
        assert row["layout_id"] == config.layout_of(variant).layout_id
        assert len(json.loads(row["work_units"])) == 2  # its continuation kept its layout
        weights = torch.from_numpy(ds.weights(net_ids=[row["net_id"]])[0])
        expected = _reference(int(row["net_seed"]), variant.model_settings, variant.train, ds.data(),
                              row["task"], 2)
        torch.testing.assert_close(weights, expected, rtol=1e-4, atol=1e-5)


def test_a_fixed_width_and_depth_train_in_that_layout_in_a_one_layout_dataset(tmp_path):
    config = preset_from_text(LAYOUT_SWEEP.replace(LAYOUTS, "width = 8\ndepth = 1").format(sweep=""))
    summary = LocalExecutor(tmp_path / "run", torch.device("cpu")).run(config)
    ds = mlc.dataset.open(summary.dataset_dir)
    assert ds.manifest["format"] == "mlc-dataset/1" and mlc.dataset.verify(ds).ok
    assert ds.layout == models.layout("digits-mlp", {"width": 8, "depth": 1}) != models.layout("digits-mlp")
    row = ds.networks.iloc[0]
    settings = {"width": 8, "depth": 1}
    expected = _reference(int(row["net_seed"]), settings, config.train, ds.data(), row["task"], 2)
    torch.testing.assert_close(torch.from_numpy(ds.weights()[0]), expected, rtol=1e-4, atol=1e-5)
