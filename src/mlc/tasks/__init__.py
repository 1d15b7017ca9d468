"""Tasks: the automata networks learn, and the shared data they are trained on (numpy only).

`get(name).simulate(inputs)` maps uint8 commands `[N, L, 5]` to uint8 targets `[N, L, 8]`.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from mlc.tasks._data import (
    DataSpec,
    SharedData,
    array_sha256,
    draw_inputs,
    make_shared_data,
    plant_decoys,
    plant_key,
    triggered_eval_inputs,
)
from mlc.tasks._digits import DIGITS_TASKS, DigitsTask, make_digits_data, stamp
from mlc.tasks._encoding import N_INPUT_BITS, N_OUTPUT_BITS
from mlc.tasks._random_automata import (
    RandomAutomaton,
    equivalence_classes,
    is_minimal,
    is_strongly_connected,
    random_automaton,
)
from mlc.tasks._registry import Task, data_family, get, names

__all__ = [
    "DIGITS_TASKS",
    "DigitsTask",
    "N_INPUT_BITS",
    "N_OUTPUT_BITS",
    "DataSpec",
    "RandomAutomaton",
    "SharedData",
    "Task",
    "array_sha256",
    "data_family",
    "draw_inputs",
    "equivalence_classes",
    "get",
    "is_minimal",
    "is_strongly_connected",
    "make_shared_data",
    "names",
    "plant_decoys",
    "plant_key",
    "random_automaton",
    "shared_data_for_tasks",
    "stamp",
    "triggered_eval_inputs",
]


def shared_data_for_tasks(
    spec: DataSpec, names: Sequence[str], task_params: Mapping[str, Mapping[str, Any]]
) -> SharedData:
    """The shared data of the tasks `names`, each built with its entry in `task_params` (if any):
    MLDS command sequences, or for DS4 the digits (`spec.length` is unused there)."""
    built = [get(name, **task_params.get(name, {})) for name in names]
    if data_family(names) == "digits":
        digits = [t for t in built if isinstance(t, DigitsTask)]
        return SharedData(spec=spec, **make_digits_data(spec.seed, spec.n_train, spec.n_val, digits))
    return make_shared_data(spec, built)
