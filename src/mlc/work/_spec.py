"""Work-unit specification: what a worker must train, as plain data (JSON-serialisable).

A work unit names a group of networks, the experiment's data (by seed and digest, so the worker
redraws it and proves it has the same bytes), the training settings and an epoch budget. A
continuation unit also carries the networks' training state (weights, Adam state, counters).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from mlc.errors import ConfigError
from mlc.tasks import DataSpec
from mlc.train import TrainConfig

__all__ = ["SPEC_FORMAT", "Member", "WorkUnit", "WorkUnitSpec"]

SPEC_FORMAT = "mlc.workunit/1"


@dataclass(frozen=True)
class Member:
    """One network in a work unit; `start_epoch` is how many epochs it has already run."""

    net_id: str
    task: str
    index: int
    net_seed: int
    start_epoch: int = 0


@dataclass(frozen=True)
class WorkUnitSpec:
    wu_id: str
    experiment: str
    model: str
    layout_id: str
    train: TrainConfig
    data: DataSpec
    data_digest: str  # SharedData.digest() over `tasks`
    tasks: tuple[str, ...]  # every task of the experiment, in target-row order
    members: tuple[Member, ...]
    epochs: int  # epoch budget of this unit
    parent: str | None = None  # the unit whose returned state this one continues
    task_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. random automata
    segments: int = 1  # the unit's epochs cut in this many; a result carries each segment's start state
    model_settings: dict[str, Any] = field(default_factory=dict)  # a sweep variant's (activation, init)

    @property
    def boundaries(self) -> tuple[int, ...]:
        """Epochs of the unit (1-based, exclusive of its end) where a segment ends and the next starts:
        the result carries the training state at each, for a validator to replay any one segment."""
        return tuple(sorted({self.epochs * i // self.segments for i in range(1, self.segments)} - {0}))

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.data.n_train / self.train.batch_size)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": SPEC_FORMAT,
                "wu_id": self.wu_id,
                "experiment": self.experiment,
                "model": self.model,
                "layout_id": self.layout_id,
                "train": self.train.to_dict(),
                "data": self.data.to_dict(),
                "data_digest": self.data_digest,
                "tasks": list(self.tasks),
                "task_params": self.task_params,
                "members": [vars(m) for m in self.members],
                "epochs": self.epochs,
                "parent": self.parent,
            }
            | ({"segments": self.segments} if self.segments != 1 else {})
            | ({"model_settings": self.model_settings} if self.model_settings else {}),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> WorkUnitSpec:
        """Parse and check a spec; any malformation is a ConfigError naming the field."""
        try:
            raw = json.loads(text)
            if raw.get("format") != SPEC_FORMAT:
                raise ConfigError(f"work unit format {raw.get('format')!r}, expected {SPEC_FORMAT!r}")
            members = tuple(Member(**m) for m in raw["members"])
            spec = cls(
                wu_id=str(raw["wu_id"]),
                experiment=str(raw["experiment"]),
                model=str(raw["model"]),
                layout_id=str(raw["layout_id"]),
                train=TrainConfig.from_dict(raw["train"]),
                data=DataSpec(**raw["data"]),
                data_digest=str(raw["data_digest"]),
                tasks=tuple(raw["tasks"]),
                task_params=dict(raw.get("task_params") or {}),
                members=members,
                epochs=int(raw["epochs"]),
                parent=raw.get("parent"),
                segments=int(raw.get("segments", 1)),
                model_settings=dict(raw.get("model_settings") or {}),
            )
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"malformed work unit spec: {type(exc).__name__}: {exc}") from None
        if spec.epochs < 1 or not spec.members:
            raise ConfigError("a work unit needs at least one member and one epoch")
        if not 1 <= spec.segments <= spec.epochs:
            raise ConfigError(f"a work unit of {spec.epochs} epochs cannot have {spec.segments} segments")
        return spec


@dataclass(frozen=True)
class WorkUnit:
    """A spec plus, for a continuation, the encoded training state it starts from."""

    spec: WorkUnitSpec
    state: bytes | None = None
