"""The task registry: names to automata.

DS1 and DS2 machines are fixed; `RandomAutomaton-<k>` names a family member that is generated from the
preset's parameters (seed, number of states), which the caller passes as keyword arguments.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mlc.errors import ConfigError, UnknownNameError
from mlc.tasks._digits import DIGITS_TASKS, DigitsTask, digits_task
from mlc.tasks._machines import DS1_MACHINES, TrojanMachine

__all__ = ["Task", "data_family", "get", "names"]


def data_family(names: Sequence[str]) -> str:
    """Which data the tasks `names` are learned from: "mlds" (command sequences, DS1-DS3) or
    "digits" (8x8 images, DS4). One experiment's tasks share one family's data."""
    families = {"digits" if n in DIGITS_TASKS else "mlds" for n in names}
    if len(families) > 1:
        raise ConfigError(f"tasks {list(names)} mix MLDS automata and DS4 digits; one experiment has one")
    return families.pop() if families else "mlds"


@runtime_checkable
class Task(Protocol):
    """An automaton over MLDS commands: `simulate` maps uint8 `[N, L, 5]` to uint8 `[N, L, 8]`."""

    @property
    def name(self) -> str: ...

    @property
    def family(self) -> str: ...

    @property
    def active_bits(self) -> tuple[int, ...]: ...

    def simulate(self, inputs: np.ndarray) -> np.ndarray: ...


def _modified_name(machine_name: str) -> str:
    return machine_name.removesuffix("Machine") + "Modified"


_FIXED: dict[str, Task] = {m.name: m for m in DS1_MACHINES}
_FIXED.update({_modified_name(m.name): TrojanMachine(_modified_name(m.name), m) for m in DS1_MACHINES})
_RANDOM = re.compile(r"RandomAutomaton-(\d+)")


def names(family: str | None = None) -> tuple[str, ...]:
    """Registered fixed task names, optionally of one family ("ds1", "ds2"). DS3's random automata
    are not registered: `get("RandomAutomaton-<k>", seed=..., n_states=...)` makes any of them."""
    families = {t.family for t in _FIXED.values()}
    if family is not None and family not in families:
        raise UnknownNameError(f"unknown task family {family!r}; the registered ones are "
                               f"{', '.join(sorted(families))} (DS3's random automata are made by get)")
    return tuple(n for n, t in _FIXED.items() if family is None or t.family == family)


def get(name: str, **params: Any) -> Task | DigitsTask:
    """The task called `name`. Random automata need `seed` and `n_states` (the preset's values)."""
    if name in _FIXED:
        if params:
            raise ConfigError(f"task {name} takes no parameters, got {sorted(params)}")
        return _FIXED[name]
    match = _RANDOM.fullmatch(name)
    if match:
        from mlc.tasks._random_automata import random_automaton

        try:
            return random_automaton(int(match.group(1)), **params)
        except TypeError:  # missing or unexpected keywords
            got = ", ".join(sorted(params)) or "none"
            raise ConfigError(f"task {name} takes the parameters seed and n_states, got {got}") from None
    if name in DIGITS_TASKS:
        return digits_task(name, **params)
    known = ", ".join(sorted(_FIXED)) + ", RandomAutomaton-<k>, " + ", ".join(DIGITS_TASKS)
    raise UnknownNameError(f"unknown task {name!r}; known tasks: {known}")
