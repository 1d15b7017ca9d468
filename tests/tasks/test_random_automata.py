"""DS3 random automata: deterministic generation, the structural checks, and simulation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from mlc import tasks
from mlc.errors import ConfigError
from mlc.tasks import RandomAutomaton, equivalence_classes, is_minimal, is_strongly_connected
from mlc.tasks import _random_automata as ra


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    ra._cached.cache_clear()
    yield
    ra._cached.cache_clear()


def _cycle_automaton() -> RandomAutomaton:
    """3 states: a write (w = 1) steps to the next state, the all-ones command resets to 0."""
    symbols = np.arange(32)
    transitions = np.stack([np.where(symbols >= 16, (s + 1) % 3, s) for s in range(3)])
    transitions[:, 31] = 0
    codes = np.array([0b10000001, 0b00000010, 0b11111111], dtype=np.uint8)
    return RandomAutomaton("Cycle", 0, 0, 3, transitions.astype(np.int64), codes)


def test_generation_is_deterministic_and_pinned_to_the_generator() -> None:
    a = tasks.get("RandomAutomaton-3", seed=11, n_states=5)
    transitions, codes = ra.draw_automaton(np.random.Generator(np.random.PCG64([11, 3])), 5)
    assert a.redraws == 0  # a first draw with 32 symbols is practically always accepted
    np.testing.assert_array_equal(a.transitions, transitions)
    np.testing.assert_array_equal(a.codes, codes)
    ra._cached.cache_clear()
    again = tasks.random_automaton(3, seed=11, n_states=5)
    assert again is not a
    np.testing.assert_array_equal(again.transitions, a.transitions)
    np.testing.assert_array_equal(again.codes, a.codes)
    other_k = tasks.random_automaton(4, seed=11, n_states=5)
    other_seed = tasks.random_automaton(3, seed=12, n_states=5)
    assert not np.array_equal(other_k.transitions, a.transitions)
    assert not np.array_equal(other_seed.transitions, a.transitions)


def test_generated_automata_have_the_promised_structure() -> None:
    for k in range(20):
        a = tasks.random_automaton(k, seed=5, n_states=6)
        assert (a.name, a.family, a.index, a.n_states) == (f"RandomAutomaton-{k}", "ds3", k, 6)
        assert a.transitions.shape == (6, 32) and a.codes.shape == (6,)
        assert len(set(a.codes.tolist())) == 6
        assert is_strongly_connected(a.transitions) and is_minimal(a.transitions, a.codes)
        varying = [i for i in range(8) if len({(int(c) >> (7 - i)) & 1 for c in a.codes}) == 2]
        assert a.active_bits == tuple(varying)
        assert not a.transitions.flags.writeable and not a.codes.flags.writeable


def test_a_rejected_draw_is_redrawn_from_the_same_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ra.draw_automaton
    calls = []

    def first_draw_disconnected(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        transitions, codes = real(rng, n)
        calls.append(1)
        if len(calls) == 1:
            transitions = np.zeros_like(transitions)  # every state falls into state 0
        return transitions, codes

    monkeypatch.setattr(ra, "draw_automaton", first_draw_disconnected)
    a = ra.random_automaton(0, seed=9, n_states=4)
    rng = np.random.Generator(np.random.PCG64([9, 0]))
    real(rng, 4)
    second = real(rng, 4)
    assert a.redraws == 1 and len(calls) == 2
    np.testing.assert_array_equal(a.transitions, second[0])


def test_strong_connectivity() -> None:
    assert is_strongly_connected(_cycle_automaton().transitions)
    unreachable = np.zeros((3, 32), dtype=np.int64)
    unreachable[0, ::2], unreachable[1, :] = 1, 0  # state 2 never entered
    assert not is_strongly_connected(unreachable)
    sink = np.ones((2, 32), dtype=np.int64)  # 0 -> 1, and 1 never leaves
    assert not is_strongly_connected(sink)
    assert is_strongly_connected(np.array([[1] * 31 + [0], [0] * 32]))


def test_minimality_by_partition_refinement() -> None:
    cycle = _cycle_automaton()
    assert is_minimal(cycle.transitions, cycle.codes)  # distinct codes: minimal when reachable
    # states 0 and 1 share a code and both always go to 2: indistinguishable
    transitions = np.full((3, 32), 2, dtype=np.int64)
    transitions[2] = np.where(np.arange(32) < 16, 0, 1)
    shared = np.array([5, 5, 9], dtype=np.uint8)
    assert is_strongly_connected(transitions) and not is_minimal(transitions, shared)
    assert equivalence_classes(transitions, shared).tolist() == [0, 0, 1]
    # same codes, but on reads state 1 stays (emits 5) where state 0 moves to 2 (emits 9): one
    # refinement round tells them apart
    transitions[1, :16] = 1
    assert is_minimal(transitions, shared)
    assert len(set(equivalence_classes(transitions, shared).tolist())) == 3
    # distinct codes but a state that state 0 cannot reach is not minimal either
    unreachable = np.zeros((3, 32), dtype=np.int64)
    unreachable[0, ::2] = 1
    assert not is_minimal(unreachable, np.array([1, 2, 3], dtype=np.uint8))


def test_simulate_against_a_hand_worked_sequence() -> None:
    # commands (w, a2, a1, a0, d) and the state each one leads to from state 0
    commands = [
        (1, 0, 0, 0, 0),  # symbol 16, a write: 0 -> 1, emits 0b00000010
        (0, 1, 0, 1, 0),  # symbol 10, a read: stays 1
        (1, 1, 0, 1, 0),  # symbol 26, a write: 1 -> 2, emits 0b11111111
        (1, 1, 1, 1, 1),  # symbol 31, reset: 2 -> 0, emits 0b10000001
        (0, 0, 0, 0, 1),  # symbol 1, a read: stays 0
    ]
    expected = [
        [0, 0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1, 0],
        [1, 1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 0, 0, 1],
        [1, 0, 0, 0, 0, 0, 0, 1],
    ]
    automaton = _cycle_automaton()
    inputs = np.array([commands], dtype=np.uint8)
    assert automaton.states(inputs).tolist() == [[1, 1, 2, 0, 0]]
    out = automaton.simulate(inputs)
    assert out.dtype == np.uint8 and out.tolist() == [expected]


def test_simulate_is_vectorised_over_sequences() -> None:
    a = tasks.random_automaton(2, seed=3, n_states=7)
    inputs = tasks.draw_inputs(tasks.DataSpec(seed=4, n_train=50, n_val=1, length=30))[0]
    out = a.simulate(inputs)
    assert out.shape == (50, 30, 8) and out.dtype == np.uint8
    for n in range(50):
        state = 0
        for t in range(30):
            symbol = int("".join(str(b) for b in inputs[n, t]), 2)
            state = int(a.transitions[state, symbol])
            code = int(a.codes[state])
            assert out[n, t].tolist() == [(code >> (7 - i)) & 1 for i in range(8)]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"seed": 1},
        {"n_states": 4},
        {"seed": 1, "n_states": 1},
        {"seed": -1, "n_states": 4},
        {"seed": 1, "n_states": 257},
        {"seed": 1, "n_states": 4, "colour": "red"},
    ],
)
def test_bad_parameters_are_config_errors(params: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        tasks.get("RandomAutomaton-0", **params)


def test_bad_commands_are_refused() -> None:
    a = tasks.random_automaton(0, seed=1, n_states=3)
    with pytest.raises(ConfigError):
        a.simulate(np.zeros((2, 3, 4), dtype=np.uint8))
