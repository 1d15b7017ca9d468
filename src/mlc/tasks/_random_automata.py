"""DS3 random automata (spec §4): Moore machines drawn at random, deterministically from (seed, k).

A command `(w, a2, a1, a0, d)` is read as the 5-bit symbol `16w + 8a2 + 4a1 + 2a0 + d` (0..31); a
state's 8-bit code is written out most significant bit first, so `y[0]` is bit 7 of the code. The
machine starts in state 0 and, at every step, moves to `transitions[state, symbol]` and emits that new
state's code.

Why the two structural checks, and what "minimal" means here: a drawn automaton is redrawn unless it
is strongly connected and minimal. Strong connectivity is the check that bites: a state that cannot be
reached from state 0 never shows up in the data, and a sink component makes the rest of the machine a
transient that the networks see only at the start of a sequence. Minimality (no two states with the
same observable future, found by Moore's partition refinement) holds by construction as long as codes
are distinct, because a state is told apart by the code it emits on entry; the check is implemented
for real anyway, so that drawing codes from a smaller alphabet (shared codes) stays correct.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlc.errors import ConfigError
from mlc.tasks._encoding import N_INPUT_BITS, N_OUTPUT_BITS, check_inputs

__all__ = [
    "MAX_REDRAWS",
    "N_SYMBOLS",
    "RandomAutomaton",
    "code_bits",
    "draw_automaton",
    "equivalence_classes",
    "is_minimal",
    "is_strongly_connected",
    "random_automaton",
    "symbols_of",
]

N_SYMBOLS = 1 << N_INPUT_BITS  # 32 commands
N_CODES = 1 << N_OUTPUT_BITS  # 256 observations
MAX_REDRAWS = 10_000  # far beyond need: for >= 2 states and 32 symbols a redraw is rare
_SYMBOL_WEIGHTS = np.array([16, 8, 4, 2, 1], dtype=np.int64)  # (w, a2, a1, a0, d), MSB first
_CODE_SHIFTS = np.arange(N_OUTPUT_BITS - 1, -1, -1, dtype=np.uint8)  # y[0] = bit 7 of the code


def symbols_of(inputs: np.ndarray) -> np.ndarray:
    """Commands uint8 `[N, L, 5]` -> symbols int64 `[N, L]` in 0..31 (w is the most significant bit)."""
    return check_inputs(inputs).astype(np.int64) @ _SYMBOL_WEIGHTS


def code_bits(codes: np.ndarray) -> np.ndarray:
    """Codes `[S]` (0..255) -> observation bits uint8 `[S, 8]`, `y[0]` the most significant bit."""
    return ((np.asarray(codes, dtype=np.uint8)[:, None] >> _CODE_SHIFTS[None, :]) & 1).astype(np.uint8)


def _reachable(successors: list[set[int]], start: int) -> set[int]:
    seen, queue = {start}, deque([start])
    while queue:
        for nxt in successors[queue.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def is_strongly_connected(transitions: np.ndarray) -> bool:
    """True when every state reaches every other: all are reachable from state 0 and reach it back.

    `transitions` int `[S, n_symbols]`.
    """
    n = transitions.shape[0]
    forward: list[set[int]] = [set(map(int, row)) for row in transitions]
    backward: list[set[int]] = [set() for _ in range(n)]
    for state, row in enumerate(forward):
        for nxt in row:
            backward[nxt].add(state)
    return len(_reachable(forward, 0)) == n and len(_reachable(backward, 0)) == n


def equivalence_classes(transitions: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Moore's partition refinement: class id `[S]` per state, equal ids = indistinguishable states.

    Start from the partition by code, then split blocks by the blocks of their successors under every
    symbol until nothing splits; at most S rounds.
    """
    labels = np.unique(np.asarray(codes), return_inverse=True)[1].astype(np.int64)
    while True:
        signature = np.concatenate([labels[:, None], labels[transitions]], axis=1)  # [S, 1 + n_sym]
        refined = np.unique(signature, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
        if refined.max() == labels.max():
            return refined
        labels = refined


def is_minimal(transitions: np.ndarray, codes: np.ndarray) -> bool:
    """True when no state is unreachable from state 0 and no two states are equivalent."""
    n = transitions.shape[0]
    reachable = _reachable([set(map(int, row)) for row in transitions], 0)
    return len(reachable) == n and int(equivalence_classes(transitions, codes).max()) + 1 == n


@dataclass(frozen=True, eq=False)
class RandomAutomaton:
    """One DS3 automaton. `transitions` int64 `[n_states, 32]`, `codes` uint8 `[n_states]` (distinct),
    both read-only; `redraws` counts the rejected draws before this one."""

    name: str
    seed: int
    index: int
    n_states: int
    transitions: np.ndarray
    codes: np.ndarray
    redraws: int = 0
    family: str = "ds3"
    _bits: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for array in (self.transitions, self.codes):
            array.flags.writeable = False
        bits = code_bits(self.codes)
        bits.flags.writeable = False
        object.__setattr__(self, "_bits", bits)

    @property
    def active_bits(self) -> tuple[int, ...]:
        """Output bits that differ between at least two codes (the others are constant)."""
        return tuple(int(i) for i in np.flatnonzero(self._bits.min(axis=0) != self._bits.max(axis=0)))

    def states(self, inputs: np.ndarray) -> np.ndarray:
        """Commands uint8 `[N, L, 5]` -> state after each step, int64 `[N, L]` (start state 0)."""
        symbols = symbols_of(inputs)  # [N, L]
        n, length = symbols.shape
        out = np.empty((n, length), dtype=np.int64)
        state = np.zeros(n, dtype=np.int64)
        for t in range(length):  # time in Python, the batch in numpy
            state = self.transitions[state, symbols[:, t]]
            out[:, t] = state
        return out

    def simulate(self, inputs: np.ndarray) -> np.ndarray:
        """Commands uint8 `[N, L, 5]` -> observations uint8 `[N, L, 8]`: the code of each new state."""
        return self._bits[self.states(inputs)]  # [N, L, 8]


def draw_automaton(rng: np.random.Generator, n_states: int) -> tuple[np.ndarray, np.ndarray]:
    """One unchecked draw: uniform transitions int64 `[n_states, 32]`, distinct codes uint8 `[n_states]`."""
    transitions = rng.integers(0, n_states, size=(n_states, N_SYMBOLS), dtype=np.int64)
    codes = rng.choice(N_CODES, size=n_states, replace=False).astype(np.uint8)
    return transitions, codes


def _whole(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_params(k: int, seed: Any, n_states: Any) -> tuple[int, int]:
    if k < 0:
        raise ConfigError(f"RandomAutomaton index must be >= 0, got {k}")
    if not _whole(seed) or seed < 0:
        raise ConfigError(f"random automata need a whole-number seed >= 0, got {seed!r}")
    if not _whole(n_states) or not 2 <= n_states <= N_CODES:
        raise ConfigError(f"random automata need n_states between 2 and {N_CODES}, got {n_states!r}")
    return int(seed), int(n_states)


@functools.lru_cache(maxsize=1024)
def _cached(k: int, seed: int, n_states: int) -> RandomAutomaton:
    rng = np.random.Generator(np.random.PCG64([seed, k]))
    for redraws in range(MAX_REDRAWS):
        transitions, codes = draw_automaton(rng, n_states)
        if is_strongly_connected(transitions) and is_minimal(transitions, codes):
            return RandomAutomaton(f"RandomAutomaton-{k}", seed, k, n_states, transitions, codes, redraws)
    raise ConfigError(  # pragma: no cover - needs a pathological n_states
        f"RandomAutomaton-{k}: no strongly connected minimal automaton with {n_states} states in "
        f"{MAX_REDRAWS} draws; use fewer states"
    )


def random_automaton(k: int, *, seed: int, n_states: int) -> RandomAutomaton:
    """`RandomAutomaton-<k>` of the preset (`seed`, `n_states`): drawn from `PCG64([seed, k])`, redrawn
    from the same generator until strongly connected and minimal, so the result depends on
    (seed, k, n_states) alone. Cached: automata are immutable."""
    return _cached(k, *_check_params(k, seed, n_states))
