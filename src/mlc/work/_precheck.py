"""The upload check a server makes before it stores a result, with numpy only (no torch).

It refuses, with a reason, what can be refused from the bytes and the spec alone: a file that is not
our safetensors form (a pickle, garbage), another unit's result, other members, tensors missing or
extra, wrong dtypes or shapes, and weights or optimiser state that are not finite. Whether the weights
really reach the losses they claim needs a re-evaluation: the validator does that afterwards, as it
does for every result, so this check only keeps malformed bytes out of the database.
"""

from __future__ import annotations

import json
import struct

import numpy as np
from safetensors.numpy import load as load_numpy  # parses tensors only; never unpickles

from mlc.errors import ResultRejected
from mlc.work._spec import WorkUnitSpec

__all__ = ["RESULT_KEY", "precheck_result"]

RESULT_KEY = "mlc.result"
_FORMAT = "mlc.result/1"
_MAX_HEADER = 1 << 24
# name -> (dtype, shape kind): "mp" [members, params], "m" [members], "me" [members, epochs]
_TENSORS = {
    "state.params": ("float32", "mp"),
    "state.exp_avg": ("float32", "mp"),
    "state.exp_avg_sq": ("float32", "mp"),
    "state.step": ("int64", "m"),
    "state.epoch": ("int64", "m"),
    "state.stopped": ("bool", "m"),
    "state.converged": ("bool", "m"),
    "history.train_loss": ("float32", "me"),
    "history.val_loss": ("float32", "me"),
    "history.val_accuracy": ("float32", "me"),
    "history.n_epochs": ("int64", "m"),
}


def precheck_result(blob: bytes, spec: WorkUnitSpec, n_params: int | None) -> None:
    """Raise ResultRejected(code, detail) unless `blob` is a well-formed result for `spec` whose
    parameters (`n_params` each, where known) and optimiser state are finite."""
    document = _document(blob)
    if document.get("format") != _FORMAT:
        raise ResultRejected("malformed", f"format {document.get('format')!r}, expected {_FORMAT}")
    if document.get("wu_id") != spec.wu_id:
        raise ResultRejected(
            "wrong_unit", f"the result names unit {document.get('wu_id')!r}, not {spec.wu_id}"
        )
    members = [m.net_id for m in spec.members]
    if document.get("members") != members:
        raise ResultRejected("members", "the result's members are not the unit's, in the unit's order")
    try:
        tensors = load_numpy(bytes(blob))
    except Exception as exc:  # safetensors raises its own error type for any malformation
        raise ResultRejected("malformed", f"unreadable tensors: {exc}") from None
    expected = dict(_TENSORS)
    for i in range(len(spec.boundaries)):  # the state at each segment boundary, as the final state
        expected.update({f"boundary.{i}.{k[6:]}": v for k, v in _TENSORS.items() if k.startswith("state.")})
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise ResultRejected("tensor_names", f"missing {missing}, unexpected {extra}")
    sizes = {"m": (len(members),), "mp": (len(members), n_params), "me": (len(members), spec.epochs)}
    for name, (dtype, kind) in expected.items():
        array = tensors[name]
        if array.dtype != np.dtype(dtype):
            raise ResultRejected("dtype", f"{name} is {array.dtype}, expected {dtype}")
        want = sizes[kind]
        fits = len(array.shape) == len(want) and all(
            w is None or a == w for a, w in zip(array.shape, want, strict=True)
        )
        if not fits:
            raise ResultRejected("shape", f"{name} has shape {list(array.shape)}, expected {list(want)}")
    for name, (_dtype, kind) in expected.items():
        if kind == "mp" and not np.isfinite(tensors[name]).all():  # weights and optimiser moments
            raise ResultRejected("non_finite", f"{name} holds NaN or infinite values")


def _document(blob: bytes) -> dict[str, object]:
    """The JSON document in the safetensors header's metadata, refused with a reason if absent."""
    if len(blob) < 8:
        raise ResultRejected("malformed", "too short to be a safetensors file")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > _MAX_HEADER or 8 + header_len > len(blob):
        raise ResultRejected(
            "malformed", f"not a safetensors file (header length {header_len} in {len(blob)} bytes)"
        )
    try:
        header = json.loads(blob[8 : 8 + header_len])
        document = json.loads(header["__metadata__"][RESULT_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise ResultRejected("malformed", f"no readable result document in the header ({exc})") from None
    if not isinstance(document, dict):
        raise ResultRejected("malformed", "the result document is not a JSON object")
    return document
