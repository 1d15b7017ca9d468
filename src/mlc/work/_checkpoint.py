"""Checkpoints inside a work unit: the training state of a population every few seconds, so a killed
worker (or an interrupted `mlc run`) resumes mid unit instead of from the unit's start.

A checkpoint is the worker's own file, never sent anywhere: the population's state and the history
of the epochs done so far, in the same pickle-free safetensors form as a result, written to a
temporary file and renamed into place (a crash leaves the old checkpoint or the new one, never half
of one). Its name is a digest of the units' specs and start states, so a checkpoint is only ever
resumed by the exact same training call.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from mlc._storage import storage_errors
from mlc.train import EpochHistory, PopulationState
from mlc.work._spec import WorkUnit
from mlc.work._tensorfile import MalformedTensorFile, pack, unpack

__all__ = ["CheckpointStore", "checkpoint_key"]

_KEY = "mlc.checkpoint"
_STATE = tuple(f.name for f in fields(PopulationState))
_HISTORY = tuple(f.name for f in fields(EpochHistory))


def checkpoint_key(units: Sequence[WorkUnit]) -> str:
    """Which training call a checkpoint belongs to: the units' specs and start states, in order."""
    digest = hashlib.sha256()
    for unit in units:
        digest.update(unit.spec.to_json().encode())
        digest.update(hashlib.sha256(unit.state or b"").digest())
    return digest.hexdigest()


class CheckpointStore:
    """Checkpoint files in `folder` (made private to the user on first write)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def save(
        self,
        key: str,
        state: PopulationState,
        history: EpochHistory,
        boundaries: Sequence[PopulationState] = (),
    ) -> None:
        tensors = {f"state.{k}": v for k, v in state.tensors().items()}
        for i, boundary in enumerate(boundaries):
            tensors.update({f"boundary.{i}.{k}": v for k, v in boundary.tensors().items()})
        tensors.update({f"history.{k}": torch.from_numpy(getattr(history, k)) for k in _HISTORY})
        blob = pack(tensors, {"key": key, "boundaries": len(boundaries)}, _KEY)
        tmp = self._path(key).with_suffix(".tmp")
        with storage_errors(tmp):
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                with open(tmp, "wb") as f:
                    f.write(blob)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                tmp.unlink(missing_ok=True)  # a half-written file must not fill what space is left
                raise
            os.replace(tmp, self._path(key))

    def load(self, key: str) -> tuple[PopulationState, EpochHistory, list[PopulationState]] | None:
        """The checkpoint of `key`, or None where there is none or it cannot be read (a damaged
        checkpoint only costs the epochs since the unit's start, so it is dropped, not trusted)."""
        path = self._path(key)
        try:
            tensors, doc = unpack(path.read_bytes(), _KEY)
            if doc.get("key") != key:
                raise MalformedTensorFile("checkpoint of another training call")
            state = PopulationState.from_tensors({k: tensors[f"state.{k}"] for k in _STATE})
            history = EpochHistory(**{k: np.array(tensors[f"history.{k}"].numpy()) for k in _HISTORY})
            boundaries = [
                PopulationState.from_tensors({k: tensors[f"boundary.{i}.{k}"] for k in _STATE})
                for i in range(int(doc.get("boundaries", 0)))
            ]
        except FileNotFoundError:
            return None
        except (OSError, KeyError, ValueError, MalformedTensorFile):
            self.discard(key)
            return None
        return state, history, boundaries

    def discard(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
