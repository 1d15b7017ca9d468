"""Presets: shipped ones resolve, overrides apply, malformed ones are refused with the key's name."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mlc.errors import ConfigError, UnknownNameError
from mlc.work import ExperimentConfig, load_preset, preset_names
from mlc.work._spec_versions import SPEC_VERSIONS


@pytest.mark.parametrize("name", ["mlds-ds1", "mlds-ds2", "mlds-smoke"])
def test_shipped_mlds_presets_follow_the_spec_defaults(name):
    config = load_preset(name)
    assert config.model == "mlds-gru"
    assert (config.data.n_train, config.data.n_val, config.data.length) == (1000, 200, 100)
    assert config.train.lr == 1e-3 and config.train.batch_size == 32
    assert (config.train.stop_val_loss, config.train.stop_val_accuracy) == (0.01, 1.0)
    assert ExperimentConfig.from_dict(config.to_dict()) == config


def test_full_presets_match_spec_section_8():
    ds1, ds2 = load_preset("mlds-ds1"), load_preset("mlds-ds2")
    assert ds1.networks_per_task == ds2.networks_per_task == 10000
    assert ds1.train.max_epochs == 1000 and ds1.epochs_per_wu == 64
    assert [t.replace("Machine", "") for t in ds1.tasks] == [t.replace("Modified", "") for t in ds2.tasks]
    assert ds1.data == ds2.data  # same inputs for DS1 and DS2
    assert {"mlds-ds1", "mlds-ds2", "mlds-smoke"} <= set(preset_names())


def test_overrides_are_checked_like_preset_values():
    assert load_preset("mlds-smoke", {"networks_per_task": 7}).networks_per_task == 7
    assert load_preset("mlds-smoke", {"train.max_epochs": 5}).train.max_epochs == 5
    with pytest.raises(ConfigError, match="networks_per_task"):
        load_preset("mlds-smoke", {"networks_per_task": 0})


def test_network_seeds_are_stable_and_distinct():
    config = load_preset("mlds-smoke")
    seeds = {config.net_seed(t, i) for t in config.tasks for i in range(50)}
    assert len(seeds) == 50 * len(config.tasks)
    assert config.net_id("ParityMachine", 3) == "ParityMachine-000003"


@pytest.mark.parametrize(
    "text, match",
    [
        ('name = "x"\nbogus = 1\n', "unknown preset keys"),
        ('name = "x"\nmodel = "mlds-gru"\nspec_version = "1"\nseed = 1\ntasks = "ParityMachine"\n', "tasks"),
        ('name = "x"\nmodel = 3\n', "model"),
        ("name = ", "invalid TOML"),
    ],
)
def test_malformed_preset_files(tmp_path, text, match):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_preset(str(path))


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="mlds-smoke"):
        load_preset("nope")


def test_a_missing_preset_file_and_a_task_listed_twice_are_named(tmp_path):
    with pytest.raises(ConfigError, match="no preset file .*missing.toml: no such file"):
        load_preset(str(tmp_path / "missing.toml"))
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(ConfigError, match="folder.toml: a folder"):
        load_preset(str(tmp_path / "folder.toml"))
    with pytest.raises(ConfigError, match="listed twice in the preset: ParityMachine$"):
        load_preset("mlds-smoke", {"tasks": ["ParityMachine", "SimpleXORMachine", "ParityMachine"]})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.stop_val_loss": float("inf")}, r"train.stop_val_loss must be a finite number, got inf"),
        ({"train.eps": float("nan")}, r"train.eps must be a finite number, got nan"),
        ({"train.stop_val_loss": -1}, r"train.stop_val_loss must be positive"),
        ({"train.stop_val_loss": 0}, r"train.stop_val_loss must be positive"),
        ({"task_params": "x"}, r"\[task_params\] must hold one table per task, got 'x'"),
        ({"task_params": {"ParityMachine": 3}}, r"task_params.ParityMachine must be a table .*got 3"),
        ({"task_params": {"ParityMachin": {}}}, r"\[task_params\] names ParityMachin, which is not in"),
        ({"subsets": [True]}, r"'subsets' must be a list of positive whole numbers, got \[True\]"),
        (
            {"tasks": ["RandomAutomaton-3"]},
            r"task RandomAutomaton-3 takes the parameters seed and n_states, got none",
        ),
    ],
)
def test_settings_no_run_could_use_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_preset("mlds-smoke", overrides)


def test_a_non_finite_value_anywhere_in_a_preset_file_is_named(tmp_path):
    """TOML reads `inf` and `nan`; the stored config must be plain JSON, so a run that took one stored
    its networks and then failed on every resume."""
    text = (Path(__file__).parents[2] / "src/mlc/presets/mlds-smoke.toml").read_text()
    path = tmp_path / "p.toml"
    path.write_text(text + "\n[task_params.ParityMachine]\nweight = -inf\n")
    with pytest.raises(ConfigError, match=r"task_params.ParityMachine.weight must be a finite number"):
        load_preset(str(path))


def test_a_preset_file_suffix_is_read_in_any_case(tmp_path):
    path = tmp_path / "Mine.TOML"
    path.write_text((Path(__file__).parents[2] / "src/mlc/presets/mlds-smoke.toml").read_text())
    assert load_preset(str(path)).name == "mlds-smoke"


def test_overrides_from_python_may_be_numpy_numbers_and_tuples():
    """What a notebook holds: a count from numpy, a task list as a tuple."""
    config = load_preset(
        "mlds-smoke",
        {"networks_per_task": np.int64(2), "train.lr": np.float32(0.5), "tasks": ("ParityMachine",)},
    )
    assert (config.networks_per_task, config.train.lr, config.tasks) == (2, 0.5, ("ParityMachine",))
    assert type(config.networks_per_task) is int


@pytest.mark.parametrize("name", ["ds4", "ds4-smoke"])
def test_shipped_ds4_presets_poison_one_task_of_two(name):
    config = load_preset(name)
    assert config.model == "digits-cnn" and config.tasks == ("DigitsClean", "DigitsBadNets")
    assert config.task_params["DigitsBadNets"]["rate"] == 0.1
    assert config.data.n_train + config.data.n_val <= 1797
    assert ExperimentConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("version", ["mlds-2", "mlds-3", "mlds-4", "mlds-5", "mlds-6", "mlds-7"])
@pytest.mark.parametrize("kind", ["ds1", "ds2", "smoke", "ds100"])
def test_mlds_2_to_7_presets_state_the_spec_version_s_settings(version, kind):
    config = load_preset(f"mlds{version[-1]}-{kind}")
    assert config.spec_version == version and config.model == "mlds-gru"
    for key, value in SPEC_VERSIONS[version]["data"].items():
        assert getattr(config.data, key) == value > 0, key
    for key, value in SPEC_VERSIONS[version]["train"].items():
        assert getattr(config.train, key) == value, key
    assert ExperimentConfig.from_dict(config.to_dict()) == config


def test_mlds_2_and_mlds_1_share_inputs_except_the_planted_keys():
    one, two, three, four, five, six, seven = (
        load_preset(f"{p}-ds1").data for p in ("mlds", "mlds2", "mlds3", "mlds4", "mlds5", "mlds6", "mlds7")
    )
    assert "trigger_rate" not in one.to_dict() and one.trigger_rate == 0
    assert "disarm_rate" not in two.to_dict() and three.disarm_rate == 0.5
    assert four == three == five == six  # mlds-4 to mlds-6 change the training settings only
    assert "decoy_rate" not in six.to_dict() and seven == dataclasses.replace(six, decoy_rate=1.0)
    for other in (two, three, seven):
        sizes = (other.seed, other.n_train, other.n_val, other.length)
        assert (one.seed, one.n_train, one.n_val, one.length) == sizes


def test_a_spec_version_fills_the_settings_a_preset_leaves_out(tmp_path):
    text = ('name = "x"\nmodel = "mlds-gru"\nspec_version = "{v}"\nseed = 1\ntasks = ["ParityMachine"]\n'
            'networks_per_task = 1\nnetworks_per_wu = 1\nepochs_per_wu = 1\n[data]\nseed = 1\n'
            '[train]\nmax_epochs = 5\n')
    path = tmp_path / "p.toml"
    path.write_text(text.format(v="mlds-2"))
    config = load_preset(str(path))
    assert (config.data.trigger_rate, config.train.stop_val_accuracy) == (0.25, 0.999)
    assert config.train.max_epochs == 5
    path.write_text(text.format(v="mlds-1"))
    assert load_preset(str(path)).train.stop_val_accuracy == 1.0
    assert load_preset(str(path), {"data.trigger_rate": 0.5}).data.trigger_rate == 0.5  # explicit wins
    assert load_preset(str(path), {"data.decoy_rate": 0.25}).data.decoy_rate == 0.25  # a setting of its own
    with pytest.raises(ConfigError, match="data.decoy_rate must be a number"):
        load_preset(str(path), {"data.decoy_rate": "some"})
    path.write_text(text.format(v="mlds-9"))
    known = "ds4-1, mlds-1, mlds-2, mlds-3, mlds-4, mlds-5, mlds-6, mlds-7"
    with pytest.raises(ConfigError, match=rf"unknown spec_version 'mlds-9'; known: {known}"):
        load_preset(str(path))
