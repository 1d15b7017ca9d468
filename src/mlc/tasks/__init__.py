"""Tasks: the automata networks learn, and the shared data they are trained on (numpy only).

`get(name).simulate(inputs)` maps uint8 commands `[N, L, 5]` to uint8 targets `[N, L, 8]`.
"""

from mlc.tasks._data import DataSpec, SharedData, array_sha256, draw_inputs, make_shared_data
from mlc.tasks._encoding import N_INPUT_BITS, N_OUTPUT_BITS
from mlc.tasks._registry import Task, get, names

__all__ = [
    "N_INPUT_BITS",
    "N_OUTPUT_BITS",
    "DataSpec",
    "SharedData",
    "Task",
    "array_sha256",
    "draw_inputs",
    "get",
    "make_shared_data",
    "names",
]
