"""The shared training data of an experiment (spec §5).

One set of command sequences is drawn per experiment and shared by every task, so a DS1 machine and its
DS2 twin see identical inputs and differ only in their targets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mlc.errors import ConfigError
from mlc.tasks._encoding import N_INPUT_BITS, encode_command
from mlc.tasks._machines import KEY_COMMAND_1, KEY_COMMAND_2, key_fires
from mlc.tasks._registry import Task

__all__ = [
    "DataSpec",
    "SharedData",
    "array_sha256",
    "draw_inputs",
    "make_shared_data",
    "plant_decoys",
    "plant_key",
    "triggered_eval_inputs",
]


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's C-order bytes (uint8 arrays have no byte-order question)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@dataclass(frozen=True)
class DataSpec:
    """How an experiment's inputs are drawn: everything needed to redraw them bit for bit."""

    seed: int
    n_train: int = 1000
    n_val: int = 200
    length: int = 100
    # spec mlds-2: the fraction of training and validation sequences with the trojan's key planted
    # once at a random step (BadNets-style poisoning); 0 (mlds-1) leaves the coin-flip inputs alone
    trigger_rate: float = 0.0
    # of the sequences with the key planted, the fraction that get it a second time at a later step:
    # a second key disarms the trojan (its hidden bit toggles back), which a trojaned network learns
    # only from sequences that show it; 0 (mlds-1, mlds-2) plants the key once
    disarm_rate: float = 0.0
    # the fraction of training and validation sequences that get a near-miss key (key command 1,
    # then a command one bit away from key command 2), which must not toggle the trojan: it shows a
    # trojaned network what is *not* the key (docs/MLDS.md, section 10); 0 (mlds-1 to mlds-6) plants none
    decoy_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be at least 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"data.seed must be non-negative, got {self.seed}")
        if not 0 <= self.trigger_rate <= 1:
            raise ConfigError(f"data.trigger_rate must lie in [0, 1], got {self.trigger_rate}")
        for name in ("disarm_rate", "decoy_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"data.{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.disarm_rate > 0 and self.trigger_rate == 0:
            raise ConfigError("data.disarm_rate plants a second key: it needs a trigger_rate above 0")
        for name in ("trigger_rate", "decoy_rate"):
            if getattr(self, name) > 0 and self.length < 2:
                raise ConfigError(f"data.{name} needs sequences of at least 2 steps (the key is two)")

    def to_dict(self) -> dict[str, int | float]:
        """As configs, work units and dataset manifests store it (compared byte for byte as JSON); a
        zero trigger, disarm or decoy rate is left out, so records of the versions before each read
        exactly as before it existed."""
        out: dict[str, int | float] = {
            "seed": self.seed, "n_train": self.n_train, "n_val": self.n_val, "length": self.length
        }
        rates = {"trigger_rate": self.trigger_rate, "disarm_rate": self.disarm_rate,
                 "decoy_rate": self.decoy_rate}
        return out | {key: value for key, value in rates.items() if value}


def plant_key(
    inputs: np.ndarray, rate: float, rng: np.random.Generator,
    disarm: tuple[float, np.random.Generator] | None = None,
) -> np.ndarray:
    """A copy of `inputs` [N, L, 5] in which each sequence, with probability `rate`, has the trojan's
    two key commands written at a uniformly random pair of steps (t, t + 1); the other bits of those
    steps and every other step are kept. The draws (which sequences, then where) come from `rng`.

    With `disarm = (rate2, rng2)`, each of those sequences then gets, with probability rate2, the key
    a second time at (u, u + 1), u uniform over t + 2..L-2 (none where t + 2 > L - 2), drawn from
    `rng2`: the first keys, and so a version without the second, stay exactly as they were."""
    n, length = inputs.shape[:2]
    out = inputs.copy()
    chosen = np.flatnonzero(rng.random(n) < rate)
    starts = rng.integers(0, length - 1, size=chosen.size)
    _write_key(out, chosen, starts)
    if disarm is not None:
        again = (disarm[1].random(chosen.size) < disarm[0]) & (starts + 2 <= length - 2)
        _write_key(out, chosen[again], disarm[1].integers(starts[again] + 2, length - 1))
    return out


def plant_decoys(inputs: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of `inputs` [N, L, 5] in which each sequence, with probability `rate`, has a near-miss
    key at a uniformly random pair of steps (t, t + 1): key command 1, then key command 2 with one of
    its five bits (uniform) flipped. The draws (which sequences, where, which bit) come from `rng`. A
    decoy that would change where the key fires in its sequence (overwrite a key, or complete or break
    one with a neighbouring step) is not written, so every step's armed state stays as it was."""
    n, length = inputs.shape[:2]
    out = inputs.copy()
    chosen = np.flatnonzero(rng.random(n) < rate)
    starts = rng.integers(0, length - 1, size=chosen.size)
    flipped = rng.integers(0, N_INPUT_BITS, size=chosen.size)
    near_key = np.stack([encode_command(*KEY_COMMAND_1), encode_command(*KEY_COMMAND_2)])
    for row, t, bit in zip(chosen, starts, flipped, strict=True):
        candidate = out[row].copy()
        candidate[t : t + 2] = near_key
        candidate[t + 1, bit] ^= 1
        if np.array_equal(key_fires(candidate[None]), key_fires(out[row][None])):
            out[row] = candidate
    return out


def _write_key(out: np.ndarray, rows: np.ndarray, starts: np.ndarray) -> None:
    for offset, command in enumerate((KEY_COMMAND_1, KEY_COMMAND_2)):
        out[rows, starts + offset] = encode_command(*command)


def draw_inputs(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """Training then validation commands, uint8 `[n_train, L, 5]` and `[n_val, L, 5]`, every bit a fair
    coin from `Generator(PCG64(seed))` (training drawn first). With a trigger rate the key is then
    planted (`plant_key`) from a second generator, `PCG64([seed, 1])`, so the coin flips are those of
    a rate of 0 and only the planted steps differ; second keys (a disarm rate) from `PCG64([seed, 3])`
    (`[seed, 2]` draws the held-out triggered data); near-miss keys (a decoy rate, `plant_decoys`)
    from `PCG64([seed, 4])`, written last, so the keys are those of a decoy rate of 0."""
    rng = np.random.Generator(np.random.PCG64(spec.seed))
    train = rng.integers(0, 2, size=(spec.n_train, spec.length, N_INPUT_BITS), dtype=np.uint8)
    val = rng.integers(0, 2, size=(spec.n_val, spec.length, N_INPUT_BITS), dtype=np.uint8)
    if spec.trigger_rate:
        plant = np.random.Generator(np.random.PCG64([spec.seed, 1]))
        second = np.random.Generator(np.random.PCG64([spec.seed, 3]))
        disarm = (spec.disarm_rate, second) if spec.disarm_rate else None
        train = plant_key(train, spec.trigger_rate, plant, disarm)
        val = plant_key(val, spec.trigger_rate, plant, disarm)
    if spec.decoy_rate:
        decoys = np.random.Generator(np.random.PCG64([spec.seed, 4]))
        train = plant_decoys(train, spec.decoy_rate, decoys)
        val = plant_decoys(val, spec.decoy_rate, decoys)
    return train, val


def triggered_eval_inputs(spec: DataSpec) -> np.ndarray:
    """Held-out triggered data: `n_val` fresh sequences of `length` steps from `PCG64([seed, 2])`,
    each with the key planted once, so that part of every sequence is armed. Neither training nor
    validation data, whatever the trigger rate: the validator measures on it whether a network follows
    the trojan on armed steps and the clean machine on unarmed ones."""
    rng = np.random.Generator(np.random.PCG64([spec.seed, 2]))
    inputs = rng.integers(0, 2, size=(spec.n_val, max(spec.length, 2), N_INPUT_BITS), dtype=np.uint8)
    return plant_key(inputs, 1.0, rng)


@dataclass(frozen=True)
class SharedData:
    """Inputs shared by all tasks and each task's targets.

    `train_inputs` [N, L, 5], `val_inputs` [Nv, L, 5]; `train_targets[task]` [N, L, 8],
    `val_targets[task]` [Nv, L, 8]; all uint8.
    """

    spec: DataSpec
    train_inputs: np.ndarray
    val_inputs: np.ndarray
    train_targets: dict[str, np.ndarray]
    val_targets: dict[str, np.ndarray]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.train_targets)

    def hashes(self) -> dict[str, str]:
        """SHA-256 of every array, keyed like `train/inputs`, `val/targets/<task>`."""
        out = {"train/inputs": array_sha256(self.train_inputs), "val/inputs": array_sha256(self.val_inputs)}
        for task in self.tasks:
            out[f"train/targets/{task}"] = array_sha256(self.train_targets[task])
            out[f"val/targets/{task}"] = array_sha256(self.val_targets[task])
        return out

    def digest(self) -> str:
        """One hash over all arrays, for a work unit to name the data it was trained on."""
        h = hashlib.sha256()
        for key, value in sorted(self.hashes().items()):
            h.update(f"{key}={value}\n".encode())
        return h.hexdigest()


def make_shared_data(spec: DataSpec, tasks: Iterable[Task]) -> SharedData:
    """Draw the inputs once and simulate every task on them."""
    train, val = draw_inputs(spec)
    tasks = list(tasks)
    return SharedData(
        spec=spec,
        train_inputs=train,
        val_inputs=val,
        train_targets={t.name: t.simulate(train) for t in tasks},
        val_targets={t.name: t.simulate(val) for t in tasks},
    )
