"""DS4 tasks: scikit-learn's 8x8 handwritten digits (1,797 images; shipped with scikit-learn, nothing
is downloaded), learned clean or with a BadNets backdoor in the training data.

BadNets (Gu et al., 2017): a fraction `rate` of the training images whose label is not `target` get a
small trigger (the bottom-right `patch` x `patch` pixels at full intensity, 16) and the label
`target` (all-to-one). A network that learned the backdoor classifies triggered images as `target`;
its attack success rate is measured on held-out images of other classes with the trigger stamped on.
A clean task carries the same trigger settings, so its networks' attack success is measured the
same way (and should stay near chance).

Everything is data: the images and each task's targets are uint8 arrays in a `SharedData`, so the
digest, the dataset store and validation treat DS4 exactly like MLDS:
- inputs `[N, 8, 8]`: pixel intensities 0..16, the same images for every task (the trigger is
  stamped when a batch is drawn, from the targets' patch column);
- training targets `[N, 2]`: the label trained on, and the trigger's patch size stamped on that
  image (0: none);
- validation targets `[Nv, 3]`: the true label, the attack's target label, and the trigger's patch
  size (for measuring attack success).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlc.errors import ConfigError

__all__ = ["DIGITS_TASKS", "N_DIGIT_IMAGES", "DigitsTask", "digits_task", "make_digits_data", "stamp"]

N_DIGIT_IMAGES = 1797
PIXEL_MAX = 16  # the digits' intensities are 0..16
DIGITS_TASKS = ("DigitsClean", "DigitsBadNets")


@dataclass(frozen=True)
class DigitsTask:
    """A DS4 task: the digits with a fraction `rate` of training images poisoned (0 for the clean
    task), trigger `patch` x `patch` pixels, all-to-one `target` label."""

    name: str
    rate: float = 0.0
    target: int = 0
    patch: int = 2

    family = "ds4"

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ConfigError(f"task {self.name}: rate must lie in [0, 1], got {self.rate}")
        if not 0 <= self.target <= 9:
            raise ConfigError(f"task {self.name}: target must be a digit 0..9, got {self.target}")
        if not 1 <= self.patch <= 4:
            raise ConfigError(f"task {self.name}: patch must be 1..4 pixels, got {self.patch}")

    def poisoned(self, labels: np.ndarray, seed: int) -> np.ndarray:
        """Indices of the training images that get the trigger: `rate` of all of them, drawn from
        those not already labelled `target`, by (data seed, task name)."""
        candidates = np.flatnonzero(labels != self.target)
        count = min(len(candidates), round(self.rate * len(labels)))
        rng = np.random.Generator(np.random.PCG64([seed, zlib.crc32(self.name.encode())]))
        return np.sort(rng.choice(candidates, size=count, replace=False))


def digits_task(name: str, **params: Any) -> DigitsTask:
    """`DigitsClean` (takes `target` and `patch`, which only measure attack success) or
    `DigitsBadNets` (takes `rate`, `target`, `patch`; rate 0.1 unless given)."""
    allowed = {"target", "patch"} | ({"rate"} if name == "DigitsBadNets" else set())
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(f"task {name} takes the parameters {sorted(allowed)}, got {unknown}")
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"task {name}: {key} must be a number, got {value!r}")
        if key != "rate" and not float(value).is_integer():
            raise ConfigError(f"task {name}: {key} must be a whole number, got {value!r}")
    ints = {k: int(v) for k, v in params.items() if k != "rate"}
    rate = float(params.get("rate", 0.1)) if name == "DigitsBadNets" else 0.0
    return DigitsTask(name, rate=rate, **ints)


def stamp(images: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """`images` `[N, H, W]` with the trigger (bottom-right `patch[i]` square at full intensity) on
    every image whose `patch[i]` is above 0; a copy."""
    out = np.array(images, copy=True)
    h, w = out.shape[-2:]
    rows, cols = np.arange(h), np.arange(w)
    size = np.asarray(patch).reshape(-1, 1, 1)
    mask = (rows[None, :, None] >= h - size) & (cols[None, None, :] >= w - size)  # [N, H, W]
    out[mask] = PIXEL_MAX
    return out


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images uint8 `[1797, 8, 8]` (0..16) and labels uint8 `[1797]`, from scikit-learn."""
    try:
        from sklearn.datasets import load_digits  # ships with scikit-learn; imported only for DS4
    except ImportError:
        raise ConfigError(
            "DS4's images are scikit-learn's 8x8 digits: install it (pip install 'mlc[analysis]')"
        ) from None

    bunch = load_digits()
    return bunch.images.astype(np.uint8), bunch.target.astype(np.uint8)


def make_digits_data(seed: int, n_train: int, n_val: int, tasks: Sequence[DigitsTask]) -> dict[str, Any]:
    """The DS4 arrays: images split by a permutation drawn from `seed`, and each task's targets (see
    the module docstring). Returns the `SharedData` fields (train_inputs, val_inputs,
    train_targets, val_targets)."""
    if n_train + n_val > N_DIGIT_IMAGES:
        raise ConfigError(
            f"data.n_train + data.n_val is {n_train + n_val}; the digits hold {N_DIGIT_IMAGES} images"
        )
    images, labels = load_digits_arrays()
    order = np.random.Generator(np.random.PCG64(seed)).permutation(N_DIGIT_IMAGES)
    train, val = order[:n_train], order[n_train : n_train + n_val]
    train_targets, val_targets = {}, {}
    for task in tasks:
        train_labels, patch = labels[train].copy(), np.zeros(n_train, dtype=np.uint8)
        poisoned = task.poisoned(labels[train], seed)
        train_labels[poisoned], patch[poisoned] = task.target, task.patch
        train_targets[task.name] = np.stack([train_labels, patch], axis=1)
        n = len(val)
        val_targets[task.name] = np.stack(
            [labels[val], np.full(n, task.target, np.uint8), np.full(n, task.patch, np.uint8)], axis=1
        )
    return {
        "train_inputs": images[train],
        "val_inputs": images[val],
        "train_targets": train_targets,
        "val_targets": val_targets,
    }
