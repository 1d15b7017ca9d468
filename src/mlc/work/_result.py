"""Work-unit results: the trained state of a work unit's networks, their history, and provenance.

Serialised as one safetensors file (tensors) whose metadata holds a JSON document (everything else).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields

import torch

from mlc.errors import ResultRejected
from mlc.train import EpochHistory, PopulationState
from mlc.work._tensorfile import MalformedTensorFile, pack, unpack

__all__ = ["RESULT_FORMAT", "Provenance", "WorkUnitResult", "decode_state", "encode_state"]

RESULT_FORMAT = "mlc.result/1"
_STATE_KEY = "mlc.state"
_STATE_TENSORS = tuple(f.name for f in fields(PopulationState))
_HISTORY_TENSORS = tuple(f.name for f in fields(EpochHistory))


@dataclass(frozen=True)
class Provenance:
    """Where and how a result was computed (spec §7's per-network record)."""

    device_kind: str
    device_name: str
    torch_version: str
    platform: str
    host_id: str
    wall_time_s: float  # wall time of the whole unit; each member is charged an equal share
    kernel_class: str = ""  # `kernel_class`: results of one class agree bit for bit


@dataclass
class WorkUnitResult:
    wu_id: str
    members: tuple[str, ...]  # net_ids, in the spec's member order
    state: PopulationState
    history: EpochHistory
    provenance: Provenance
    # the training state at each of the spec's segment boundaries, for segment replay
    boundaries: tuple[PopulationState, ...] = ()

    def to_bytes(self) -> bytes:
        tensors = {f"state.{k}": v for k, v in self.state.tensors().items()}
        for i, boundary in enumerate(self.boundaries):
            tensors.update({f"boundary.{i}.{k}": v for k, v in boundary.tensors().items()})
        tensors.update(
            {
                "history.train_loss": torch.from_numpy(self.history.train_loss),
                "history.val_loss": torch.from_numpy(self.history.val_loss),
                "history.val_accuracy": torch.from_numpy(self.history.val_accuracy),
                "history.n_epochs": torch.from_numpy(self.history.n_epochs),
            }
        )
        document = {
            "format": RESULT_FORMAT,
            "wu_id": self.wu_id,
            "members": list(self.members),
            "provenance": vars(self.provenance),
        }
        return pack(tensors, document, "mlc.result")

    def training_sha256(self) -> str:
        """SHA-256 of what the training produced (every state tensor, boundary and history array),
        not of where it ran: two hosts of one kernel class that trained a unit as its spec says get
        the same digest, so replicas are compared by it."""
        h = hashlib.sha256()
        tensors = {f"state.{k}": v for k, v in self.state.tensors().items()}
        for i, boundary in enumerate(self.boundaries):
            tensors.update({f"boundary.{i}.{k}": v for k, v in boundary.tensors().items()})
        for name in _HISTORY_TENSORS:
            tensors[f"history.{name}"] = torch.from_numpy(getattr(self.history, name))
        for name in sorted(tensors):
            value = tensors[name].detach().cpu().contiguous()
            h.update(f"{name}:{value.dtype}:{tuple(value.shape)}\n".encode())
            h.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
        return h.hexdigest()

    @classmethod
    def from_bytes(cls, blob: bytes) -> WorkUnitResult:
        """Parse an uploaded result; structural problems raise ResultRejected("malformed", ...).

        Shapes, values and agreement with the spec are checked later by `validate_result`.
        """
        try:
            tensors, doc = unpack(blob, "mlc.result")
        except MalformedTensorFile as exc:
            raise ResultRejected("malformed", str(exc)) from None
        if doc.get("format") != RESULT_FORMAT:
            raise ResultRejected("malformed", f"format {doc.get('format')!r}, expected {RESULT_FORMAT}")
        n_boundaries = len({name.split(".")[1] for name in tensors if name.startswith("boundary.")})
        expected = {f"state.{k}" for k in _STATE_TENSORS} | {f"history.{k}" for k in _HISTORY_TENSORS}
        expected |= {f"boundary.{i}.{k}" for i in range(n_boundaries) for k in _STATE_TENSORS}
        if set(tensors) != expected:
            missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
            raise ResultRejected("tensor_names", f"missing {missing}, unexpected {extra}")
        try:
            prov = Provenance(**doc["provenance"])
            members = tuple(str(m) for m in doc["members"])
            wu_id = str(doc["wu_id"])
        except (KeyError, TypeError) as exc:
            raise ResultRejected("malformed", f"result document: {exc}") from None
        history_n = tensors["history.n_epochs"]
        return cls(
            wu_id=wu_id,
            members=members,
            state=PopulationState.from_tensors({k: tensors[f"state.{k}"] for k in _STATE_TENSORS}),
            history=EpochHistory(
                train_loss=tensors["history.train_loss"].numpy(),
                val_loss=tensors["history.val_loss"].numpy(),
                val_accuracy=tensors["history.val_accuracy"].numpy(),
                n_epochs=history_n.numpy(),
            ),
            provenance=prov,
            boundaries=tuple(
                PopulationState.from_tensors({k: tensors[f"boundary.{i}.{k}"] for k in _STATE_TENSORS})
                for i in range(n_boundaries)
            ),
        )


def encode_state(state: PopulationState, wu_id: str) -> bytes:
    """The training state a continuation unit starts from."""
    return pack(state.tensors(), {"wu_id": wu_id}, _STATE_KEY)


def decode_state(blob: bytes, wu_id: str) -> PopulationState:
    tensors, doc = unpack(blob, _STATE_KEY)
    if doc.get("wu_id") != wu_id:
        raise MalformedTensorFile(f"state belongs to work unit {doc.get('wu_id')!r}, not {wu_id!r}")
    if set(tensors) != set(_STATE_TENSORS):
        raise MalformedTensorFile(f"state tensors {sorted(tensors)}, expected {list(_STATE_TENSORS)}")
    return PopulationState.from_tensors(tensors)
