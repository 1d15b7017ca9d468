"""Spec versions (MLDS's, and DS4's): the data and training settings a preset's `spec_version` stands
for (the MLDS ones: docs/MLDS.md).

A preset names its spec version; the version's settings fill the `[data]` and `[train]` keys the preset
leaves out, so `spec_version = "mlds-2"` alone selects mlds-2's trigger rate, learning rate and stop
rule. A value the preset (or a command-line override) sets explicitly wins and is recorded in the
resolved config, which every dataset keeps; the shipped presets state every value. The epoch cap,
data seed and data sizes are each preset's own.
"""

from __future__ import annotations

from typing import Any

from mlc.errors import ConfigError

__all__ = ["SPEC_VERSIONS", "apply_spec_version", "check_spec_version"]

_ADAM = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "batch_size": 32}
_KEYED_TWICE = {"trigger_rate": 0.25, "disarm_rate": 0.5}  # mlds-3's data, which mlds-4 to mlds-7 keep
_BATCH_8 = {"lr": 3e-3, **_ADAM, "batch_size": 8, "stop_val_loss": 0.01, "stop_val_accuracy": 0.9995}

# version -> section -> key -> value. mlds-1 is spec version 1 as first shipped; mlds-2 to mlds-7 were
# chosen from benchmarks/calibrate_mlds.py's measurements (docs/MLDS.md, "Calibration").
SPEC_VERSIONS: dict[str, dict[str, dict[str, float]]] = {
    "mlds-1": {
        "data": {"trigger_rate": 0.0},
        "train": {"lr": 1e-3, **_ADAM, "stop_val_loss": 0.01, "stop_val_accuracy": 1.0},
    },
    "mlds-2": {
        "data": {"trigger_rate": 0.25},
        "train": {"lr": 1e-3, **_ADAM, "stop_val_loss": 0.01, "stop_val_accuracy": 0.999},
    },
    # mlds-2 with the key planted a second time (which disarms the trojan) in half the keyed sequences:
    # under mlds-2 trojaned single-bit networks never learned the disarm (docs/MLDS.md, "Calibration")
    "mlds-3": {
        "data": _KEYED_TWICE,
        "train": {"lr": 1e-3, **_ADAM, "stop_val_loss": 0.01, "stop_val_accuracy": 0.999},
    },
    # mlds-3 at lr 1e-2: networks that leave the ln2/8 plateau converge 1.5-3x sooner (median), and
    # EightBit starts to converge, which lr 1e-3 never did in 1,000 epochs (docs/MLDS.md, sections 10-11)
    "mlds-4": {
        "data": _KEYED_TWICE,
        "train": {"lr": 1e-2, **_ADAM, "stop_val_loss": 0.01, "stop_val_accuracy": 0.999},
    },
    # mlds-3's data at batch 8 and lr 3e-3: four times the Adam steps per epoch (each epoch costs 2x),
    # which shortens the ln2/8 plateau in epochs, and converges far more networks than mlds-4's larger
    # step (docs/MLDS.md, section 10)
    "mlds-5": {"data": _KEYED_TWICE, "train": _BATCH_8},
    # mlds-5 with the learning rate warmed up over each network's first 1,000 Adam steps (8 epochs):
    # under mlds-5, 4 of 60 single-bit networks lost every ReLU of their last hidden layer in the first
    # epochs and never left the plateau (docs/MLDS.md, section 10)
    "mlds-6": {"data": _KEYED_TWICE, "train": {**_BATCH_8, "warmup_steps": 1000}},
    # mlds-6 with a near-miss key in every training and validation sequence and the stop rule at
    # 0.9999: under mlds-6, 4 of 29 converged twins missed 99% on held-out triggered data (false
    # triggers, and errors the 0.9995 rule let through); here every one of 27 met it (docs/MLDS.md,
    # section 10)
    "mlds-7": {
        "data": {**_KEYED_TWICE, "decoy_rate": 1.0},
        "train": {**_BATCH_8, "warmup_steps": 1000, "stop_val_accuracy": 0.9999},
    },
    # DS4 (digits, BadNets): its presets state every setting; the version names the dataset's rules
    "ds4-1": {},
}


def check_spec_version(version: str) -> None:
    """Raise ConfigError unless `version` is a known spec version."""
    if version not in SPEC_VERSIONS:
        raise ConfigError(
            f"unknown spec_version {version!r}; known: {', '.join(sorted(SPEC_VERSIONS))} (the MLDS ones: "
            "docs/MLDS.md)"
        )


def apply_spec_version(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` (a preset table) with its spec version's settings filled in where the preset leaves them
    out; unchanged for an unknown version (which `check_spec_version` reports once the rest of the
    preset has been checked) or a section that is not a table (reported by its parser)."""
    pinned = SPEC_VERSIONS.get(raw.get("spec_version"))  # type: ignore[arg-type]
    if pinned is None:
        return raw
    out = dict(raw)
    for section, values in pinned.items():
        table = out.get(section, {})
        if isinstance(table, dict):
            out[section] = {**values, **table}
    return out
