"""DS3 presets: `[random_automata]` resolved by the learnability check into concrete tasks, once."""

from __future__ import annotations

import json
from typing import Any

import pytest

import mlc.models
from mlc import tasks
from mlc.errors import ConfigError
from mlc.store._format import NETWORKS_SCHEMA
from mlc.store._readme import render_readme
from mlc.train import SelectionProgress
from mlc.work import ExperimentConfig, _experiment, load_preset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def smoke() -> tuple[ExperimentConfig, list[SelectionProgress]]:
    events: list[SelectionProgress] = []
    return load_preset("mlds-ds3-smoke", progress=events.append), events


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the learnability check ran")

    monkeypatch.setattr(_experiment, "select_automata", refuse)


def test_the_smoke_preset_resolves_into_random_automata(smoke: tuple[ExperimentConfig, list]) -> None:
    config, events = smoke
    record = config.random_automata
    assert record is not None
    selection = record["selection"]
    assert len(config.tasks) == record["count"] == 3
    assert all(t.startswith("RandomAutomaton-") for t in config.tasks)
    assert config.task_params == {t: {"seed": 20260103, "n_states": 3} for t in config.tasks}
    assert list(config.tasks) == selection["kept"]
    tried = [v["task"] for v in selection["verdicts"]]
    assert tried == [f"RandomAutomaton-{k}" for k in range(selection["candidates_tried"])]
    assert selection["rejected"] == [v["task"] for v in selection["verdicts"] if not v["kept"]]
    assert selection["fraction_rejected"] == len(selection["rejected"]) / selection["candidates_tried"]
    assert record["learnability"]["networks"] == 1 and record["learnability"]["enabled"] is True
    assert events and events[-1].epochs == 2 and events[0].count == 3
    for task in config.tasks:  # the resolved tasks are real automata with the recorded parameters
        automaton = tasks.get(task, **config.task_params[task])
        assert automaton.n_states == 3


def test_a_resolved_config_round_trips_without_rerunning(
    smoke: tuple[ExperimentConfig, list], no_training: None
) -> None:
    config, _ = smoke
    stored = json.loads(json.dumps(config.to_dict(), allow_nan=False))
    again = ExperimentConfig.from_dict(stored)
    assert again == config and again.to_dict() == config.to_dict()


def test_the_expansion_is_deterministic(smoke: tuple[ExperimentConfig, list]) -> None:
    assert load_preset("mlds-ds3-smoke").to_dict() == smoke[0].to_dict()


def test_an_exhausted_budget_is_a_clear_error() -> None:
    overrides = {"random_automata.learnability.threshold": 1.0, "random_automata.learnability.epochs": 1,
                 "random_automata.learnability.max_candidates": 4}
    with pytest.raises(ConfigError, match="max_candidates"):
        load_preset("mlds-ds3-smoke", overrides)


def test_a_disabled_check_ignores_its_settings(no_training: None) -> None:
    # 7 automata: above the preset's max_candidates (6), few enough that the shared data fits a
    # small CI machine's memory
    config = load_preset("mlds-ds3-smoke", {"random_automata.learnability.enabled": False,
                                            "random_automata.count": 7,
                                            "random_automata.learnability.n_train": 5000})
    assert len(config.tasks) == 7


def test_a_disabled_check_takes_the_first_automata(no_training: None) -> None:
    config = load_preset("mlds-ds3-smoke", {"random_automata.learnability.enabled": False,
                                            "random_automata.count": 4})
    assert config.tasks == tuple(f"RandomAutomaton-{k}" for k in range(4))
    assert config.random_automata is not None
    assert config.random_automata["selection"]["fraction_rejected"] == 0.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"random_automata.n_states": 1}, "n_states"), ({"random_automata.count": 0}, "count"),
     ({"random_automata.colour": "red"}, "colour"), ({"random_automata.learnability.speed": 2}, "speed"),
     ({"random_automata.learnability.enabled": "yes"}, "enabled"),
     ({"random_automata.learnability.threshold": 2.0}, "^random_automata.learnability.threshold must"),
     ({"random_automata.learnability.speed": 2}, r"in \[random_automata.learnability\]"),
     ({"random_automata.learnability.n_train": 5000},
      "learnability.n_train is 5000, but data.n_train is 1000"),
     ({"random_automata.learnability.length": 101}, "learnability.length is 101, but data.length is 100"),
     ({"random_automata.learnability.max_candidates": 2},
      r"max_candidates \(2\) is below random_automata.count \(3\)"),
     ({"tasks": ["ParityMachine"]}, "remove its `tasks` list"),
     ({"random_automata.learnability.threshold": "high"}, "threshold must be a number, got 'high'"),
     ({"random_automata.learnability.threshold": float("nan")}, "threshold must be a finite number")],
)
def test_bad_tables_are_config_errors(no_training: None, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_preset("mlds-ds3-smoke", overrides)


def test_from_dict_refuses_an_unresolved_or_inconsistent_table(
    smoke: tuple[ExperimentConfig, list], no_training: None
) -> None:
    raw = smoke[0].to_dict()
    unresolved = {k: v for k, v in raw.items() if k not in ("tasks", "task_params")}
    unresolved["random_automata"] = {"count": 3, "n_states": 3}
    with pytest.raises(ConfigError, match="load_preset"):
        ExperimentConfig.from_dict(unresolved)
    with pytest.raises(ConfigError, match="differ"):
        ExperimentConfig.from_dict(raw | {"tasks": raw["tasks"][:2]})


def test_ds1_configs_are_unchanged() -> None:
    config = load_preset("mlds-ds1")
    assert config.random_automata is None and "random_automata" not in config.to_dict()
    assert ExperimentConfig.from_dict(config.to_dict()) == config


def test_the_full_preset_parses_without_running_the_check(no_training: None) -> None:
    config = load_preset("mlds-ds3", {"random_automata.learnability.enabled": False})
    assert len(config.tasks) == 100 and config.networks_per_task == 10000
    assert config.subsets == (100, 1000, 10000)


def test_the_readme_states_the_selection(smoke: tuple[ExperimentConfig, list]) -> None:
    config = smoke[0]
    selection = config.random_automata["selection"]  # type: ignore[index]
    manifest = {
        "name": "ds3-test", "spec_version": "mlds-1", "preset": "mlds-ds3-smoke", "n_networks": 0,
        "model": "mlds-gru", "tasks": list(config.tasks),
        "counts": {t: {"networks": 0, "converged": 0} for t in config.tasks},
        "data": {"seed": 1, "n_train": 1000, "n_val": 200, "length": 100}, "data_hashes": {},
    }
    text = render_readme(manifest, config.to_dict(), [mlc.models.layout("mlds-gru")],
                         NETWORKS_SCHEMA.empty_table())
    assert "### DS3: random automata" in text and "3 states" in text
    assert f"| {selection['candidates_tried']} | 3 | {len(selection['rejected'])} |" in text
    assert f"{selection['fraction_rejected']:.1%}" in text
    assert "validation bit accuracy >= 0.5" in text and "budget of 6 candidates" in text


def test_a_known_resolution_is_reused_instead_of_rerunning_the_check(monkeypatch):
    from mlc.work import _experiment

    first = load_preset("mlds-ds3-smoke")

    def no_check(*_args, **_kwargs):
        raise AssertionError("the learnability check ran again")

    monkeypatch.setattr(_experiment, "_expand_random_automata", no_check)
    again = load_preset("mlds-ds3-smoke", known=[first])
    assert again == first
    with pytest.raises(AssertionError, match="ran again"):  # other settings: the check must run
        load_preset("mlds-ds3-smoke", {"random_automata.n_states": 2}, known=[first])
