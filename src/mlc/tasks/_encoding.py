"""The MLDS command/observation encoding (spec §1), shared by every automaton.

Commands are uint8 arrays `[N, L, 5]` with bits (w, a2, a1, a0, d); observations are uint8 `[N, L, 8]`.
"""

from __future__ import annotations

import numpy as np

from mlc.errors import ConfigError

__all__ = ["N_INPUT_BITS", "N_OUTPUT_BITS", "check_inputs", "decode", "encode_command"]

N_INPUT_BITS = 5
N_OUTPUT_BITS = 8


def check_inputs(inputs: np.ndarray) -> np.ndarray:
    """Reject anything but a 0/1 uint8 array `[N, L, 5]`; returns it unchanged."""
    if not isinstance(inputs, np.ndarray) or inputs.dtype != np.uint8:
        raise ConfigError("commands must be a numpy uint8 array [N, L, 5]")
    if inputs.ndim != 3 or inputs.shape[2] != N_INPUT_BITS:
        raise ConfigError(f"commands must have shape [N, L, 5], got {list(inputs.shape)}")
    if inputs.size and inputs.max() > 1:
        raise ConfigError("commands must hold only the bits 0 and 1")
    return inputs


def decode(inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split commands `[N, L, 5]` into write enable `w`, address `a` (0..7) and data `d`, each [N, L]."""
    w = inputs[..., 0]
    a = (inputs[..., 1] << 2) | (inputs[..., 2] << 1) | inputs[..., 3]
    d = inputs[..., 4]
    return w, a, d


def encode_command(w: int, a: int, d: int) -> np.ndarray:
    """One command's 5 bits (w, a2, a1, a0, d) as uint8, the inverse of `decode`."""
    return np.array([w, (a >> 2) & 1, (a >> 1) & 1, a & 1, d], dtype=np.uint8)
