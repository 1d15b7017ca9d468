"""The learnability check: one population of reference networks judges every automaton."""

from __future__ import annotations

import numpy as np
import pytest

from mlc import tasks
from mlc.errors import ConfigError
from mlc.tasks import RandomAutomaton, SharedData
from mlc.train import LearnabilitySettings, TrainConfig, check_learnability, select_automata
from mlc.work import population_for

FAST = {"population_factory": population_for}  # the C kernels where they build, as `mlc run` trains

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _nearly_constant() -> RandomAutomaton:
    """Strongly connected, but in state 1 after every command except symbol 0: the output is
    0b00000001 about 97% of the time: a network fits it once it has learnt the output biases."""
    transitions = np.ones((2, 32), dtype=np.int64)
    transitions[:, 0] = 0
    return RandomAutomaton("NearlyConstant", 0, 0, 2, transitions, np.array([0, 1], dtype=np.uint8))


@pytest.fixture(scope="module")
def data() -> SharedData:
    spec = tasks.DataSpec(seed=3, n_train=64, n_val=16, length=8)
    return tasks.make_shared_data(spec, [_nearly_constant(), tasks.random_automaton(0, seed=1, n_states=8)])


def test_keeps_the_learnable_and_rejects_the_unlearnable(data: SharedData) -> None:
    settings = LearnabilitySettings(networks=2, epochs=12, threshold=0.99)
    seen: list[tuple[int, tuple[bool, ...]]] = []
    # lr 1e-2: two Adam steps per epoch here; fits within 2 to 7 epochs across reference seeds
    report = check_learnability(["NearlyConstant", "RandomAutomaton-0"], data, settings,
                                TrainConfig(lr=1e-2), on_epoch=lambda *a: seen.append(a), **FAST)
    easy, hard = report.verdicts
    assert report.kept == ("NearlyConstant",) and report.rejected == ("RandomAutomaton-0",)
    assert easy.kept and easy.n_fitted >= 1 and easy.best_val_accuracy >= 0.99
    assert easy.epochs_run < 12  # decided automata stop training
    assert not hard.kept and hard.n_fitted == 0 and hard.epochs_run == 12
    assert hard.best_val_accuracy < 0.99 and np.isfinite(hard.best_val_loss)
    assert [done for done, _ in seen] == list(range(1, 13))
    assert seen[-1][1] == (True, False) and seen[0][1][1] is False


def test_an_impossible_requirement_rejects_everything(data: SharedData) -> None:
    # every network must fit, at perfect accuracy, within one epoch
    settings = LearnabilitySettings(networks=2, epochs=1, threshold=1.0, fit_fraction=1.0)
    names = ["NearlyConstant", "RandomAutomaton-0"]
    report = check_learnability(names, data, settings, TrainConfig(), **FAST)
    assert report.kept == () and settings.required == 2


def test_results_do_not_depend_on_the_call(data: SharedData) -> None:
    settings = LearnabilitySettings(networks=1, epochs=2, threshold=0.99)
    a = check_learnability(["RandomAutomaton-0"], data, settings, TrainConfig(), **FAST)
    b = check_learnability(["RandomAutomaton-0"], data, settings, TrainConfig(), **FAST)
    assert a == b


def test_selection_stops_when_the_budget_is_spent() -> None:
    spec = tasks.DataSpec(seed=1, n_train=32, n_val=8, length=8)
    settings = LearnabilitySettings(networks=1, epochs=1, threshold=1.0, max_candidates=3)
    with pytest.raises(ConfigError, match="only 0 of 2 wanted automata .* in 3 candidates"):
        select_automata(2, {"seed": 1, "n_states": 6}, spec, settings, TrainConfig(), **FAST)


def test_selection_keeps_the_first_that_pass_in_order() -> None:
    spec = tasks.DataSpec(seed=1, n_train=32, n_val=8, length=8)
    settings = LearnabilitySettings(networks=1, epochs=1, threshold=0.05, max_candidates=5)
    selection = select_automata(2, {"seed": 1, "n_states": 3}, spec, settings, TrainConfig(), **FAST)
    assert selection.kept == ("RandomAutomaton-0", "RandomAutomaton-1")
    assert selection.n_tried == 2 and selection.rejected == ()


@pytest.mark.parametrize(
    "bad",
    [{"networks": 0}, {"epochs": 1.5}, {"threshold": 0.0}, {"threshold": 1.5}, {"fit_fraction": -0.1},
     {"max_candidates": True}, {"n_train": 0}],
)
def test_bad_settings_are_config_errors(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        LearnabilitySettings(**bad)  # type: ignore[arg-type]


def test_missing_targets_are_named(data: SharedData) -> None:
    with pytest.raises(ConfigError, match="RandomAutomaton-9"):
        check_learnability(["RandomAutomaton-9"], data, LearnabilitySettings(), TrainConfig(), **FAST)
    with pytest.raises(ConfigError, match="twice"):
        check_learnability(["RandomAutomaton-0"] * 2, data, LearnabilitySettings(), TrainConfig(), **FAST)
