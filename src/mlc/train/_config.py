"""Training hyperparameters and the stop rule (spec §7), as data.

A preset's `[train]` table becomes a `TrainConfig`; every network records it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from mlc.errors import ConfigError

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """How each network is trained and when it stops.

    A network is converged when val_loss < `stop_val_loss` and val bit accuracy >= `stop_val_accuracy`
    after an epoch; it stops then, or at `max_epochs` (kept, flagged not converged).
    """

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    batch_size: int = 32
    max_epochs: int = 1000
    stop_val_loss: float = 0.01
    stop_val_accuracy: float = 1.0
    weight_decay: float = 0.0  # L2, added to the gradient (torch.optim.Adam's weight_decay)
    # the learning rate rises linearly over a network's first `warmup_steps` Adam steps (step t uses
    # lr * t / warmup_steps): Adam's first steps are full-sized in every weight, and at MLDS's batch 8
    # they killed every ReLU of some networks' last hidden layer for good (docs/MLDS.md, section 10)
    warmup_steps: int = 0
    # the learning rate halves every `lr_half_life_steps` Adam steps of a network (step t uses
    # lr * 0.5 ** (t / lr_half_life_steps), times the warm-up's factor): at a constant lr 3e-3, MLDS
    # networks that had reached 0.9995 bit accuracy often never settled at 0.9999, and some unlearned
    # their trojan (docs/MLDS.md, section 10); 0 keeps the rate constant
    lr_half_life_steps: int = 0

    def __post_init__(self) -> None:
        for key in ("lr", "beta1", "beta2", "eps"):  # stop_val_loss=inf: stop on accuracy alone
            if not math.isfinite(getattr(self, key)):
                raise ConfigError(f"train.{key} must be a finite number, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError("train.beta1 and train.beta2 must lie in [0, 1)")
        if not self.eps > 0:
            raise ConfigError(f"train.eps must be positive, got {self.eps}")
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be at least 1, got {self.batch_size}")
        if self.max_epochs < 1:
            raise ConfigError(f"train.max_epochs must be at least 1, got {self.max_epochs}")
        if not self.stop_val_loss > 0:  # a loss is never below 0: no network could converge
            raise ConfigError(f"train.stop_val_loss must be positive, got {self.stop_val_loss}")
        if not 0 <= self.stop_val_accuracy <= 1:
            raise ConfigError("train.stop_val_accuracy must lie in [0, 1]")
        if not 0 <= self.weight_decay < math.inf:
            raise ConfigError(f"train.weight_decay must be a finite number >= 0, got {self.weight_decay}")
        for key in ("warmup_steps", "lr_half_life_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must be at least 0, got {getattr(self, key)}")

    def converged(self, val_loss: Any, val_accuracy: Any) -> Any:
        """The convergence test, elementwise on tensors or arrays: the trainer's stop rule and the
        validator's check of a claimed stop must be the same expression."""
        return (val_loss < self.stop_val_loss) & (val_accuracy >= self.stop_val_accuracy)

    def to_dict(self) -> dict[str, Any]:
        """As configs, work units and networks record it; `weight_decay` and the lr schedule's
        settings only where they are used, so what was stored before they existed reads back
        unchanged."""
        values = asdict(self)
        for key in ("weight_decay", "warmup_steps", "lr_half_life_steps"):
            if not values[key]:
                del values[key]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a preset table, rejecting unknown keys and wrong types with the key's name."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown train settings {unknown}; known: {sorted(known)}")
        clean: dict[str, Any] = {}
        for key, value in values.items():
            want = int if known[key] == "int" else float
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"train.{key} must be a number, got {value!r}")
            if want is int and not float(value).is_integer():
                raise ConfigError(f"train.{key} must be a whole number, got {value!r}")
            clean[key] = want(value)
        return cls(**clean)
