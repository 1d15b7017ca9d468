"""The DS1 machines (spec §2) and their DS2 trojan twins (spec §3).

Each machine is simulated over a whole batch of sequences at once: the time loop is in Python, the
batch dimension in numpy, so 1,000 sequences of 100 steps take milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlc.tasks._encoding import N_OUTPUT_BITS, check_inputs, decode

__all__ = ["DS1_MACHINES", "KEY_COMMAND_1", "KEY_COMMAND_2", "Machine", "TrojanMachine", "key_fires"]

# The trojan's two-command key: reads (w = 0) with the data line high, at addresses 5 then 2.
KEY_COMMAND_1 = (0, 5, 1)  # (w, a, d)
KEY_COMMAND_2 = (0, 2, 1)


@dataclass(frozen=True)
class Machine:
    """A DS1 machine: a register update on writes and an output function of the register."""

    name: str
    kind: str  # "single_direct" | "single_invert" | "simple_xor" | "eight_bit" | "parity"
    active_bits: tuple[int, ...]
    family: str = "ds1"

    def simulate(self, inputs: np.ndarray) -> np.ndarray:
        """Commands `[N, L, 5]` uint8 -> observations `[N, L, 8]` uint8 (Mealy: after the command)."""
        w, a, d = decode(check_inputs(inputs))
        n, length = w.shape
        out = np.zeros((n, length, N_OUTPUT_BITS), dtype=np.uint8)
        if self.kind in ("eight_bit", "parity"):
            register = np.zeros((n, N_OUTPUT_BITS), dtype=np.uint8)
            rows = np.arange(n)
            for t in range(length):
                writing = w[:, t] == 1
                register[rows[writing], a[writing, t]] = d[writing, t]
                if self.kind == "eight_bit":
                    out[:, t, :] = register
                else:
                    out[:, t, 0] = np.bitwise_xor.reduce(register, axis=1)
            return out
        bit = np.zeros(n, dtype=np.uint8)
        for t in range(length):
            writing = w[:, t] == 1
            if self.kind == "single_direct":
                new = d[:, t]
            elif self.kind == "single_invert":
                new = 1 - d[:, t]
            else:  # simple_xor
                new = bit ^ d[:, t]
            bit = np.where(writing, new, bit).astype(np.uint8)
            out[:, t, 0] = bit
        return out


def key_fires(inputs: np.ndarray) -> np.ndarray:
    """Bool `[N, L]`: True at step t when command t is key 2 and command t-1 was key 1."""
    w, a, d = decode(check_inputs(inputs))
    is_key1 = (w == KEY_COMMAND_1[0]) & (a == KEY_COMMAND_1[1]) & (d == KEY_COMMAND_1[2])
    is_key2 = (w == KEY_COMMAND_2[0]) & (a == KEY_COMMAND_2[1]) & (d == KEY_COMMAND_2[2])
    fires = np.zeros_like(is_key2)
    fires[:, 1:] = is_key2[:, 1:] & is_key1[:, :-1]
    return fires


@dataclass(frozen=True)
class TrojanMachine:
    """A DS2 twin: the DS1 machine plus a hidden `armed` bit toggled by the key sequence; while armed,
    every active output bit is inverted."""

    name: str
    base: Machine
    family: str = "ds2"

    @property
    def active_bits(self) -> tuple[int, ...]:
        return self.base.active_bits

    def simulate(self, inputs: np.ndarray) -> np.ndarray:
        """Commands `[N, L, 5]` uint8 -> observations `[N, L, 8]` uint8."""
        clean = self.base.simulate(inputs)
        # armed after step t = parity of the number of key completions up to and including t
        armed = (np.cumsum(key_fires(inputs), axis=1) % 2).astype(np.uint8)  # [N, L]
        mask = np.zeros(N_OUTPUT_BITS, dtype=np.uint8)
        mask[list(self.active_bits)] = 1
        return clean ^ (armed[:, :, None] * mask[None, None, :])


DS1_MACHINES: tuple[Machine, ...] = (
    Machine("SingleDirectMachine", "single_direct", (0,)),
    Machine("SingleInvertMachine", "single_invert", (0,)),
    Machine("SimpleXORMachine", "simple_xor", (0,)),
    Machine("EightBitMachine", "eight_bit", tuple(range(8))),
    Machine("ParityMachine", "parity", (0,)),
)
