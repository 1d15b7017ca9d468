"""Pickle-free tensor containers: safetensors bytes with a JSON document in the metadata.

Untrusted bytes from workers arrive in this form; parsing never executes anything, and every
malformation becomes a `ResultRejected` or `ConfigError` with a reason.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import torch
from safetensors.torch import load as load_safetensors  # parses tensors only; never unpickles
from safetensors.torch import save as save_safetensors

__all__ = ["MalformedTensorFile", "pack", "unpack"]

_MAX_HEADER = 1 << 24  # 16 MiB of header is far beyond any real work unit


class MalformedTensorFile(ValueError):
    """The bytes are not a well-formed safetensors file with our JSON document."""


def pack(tensors: dict[str, torch.Tensor], document: dict[str, Any], key: str) -> bytes:
    """Serialise CPU tensors plus one JSON document stored under metadata `key`."""
    cpu = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    return save_safetensors(cpu, metadata={key: json.dumps(document, sort_keys=True)})


def unpack(blob: bytes, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Inverse of `pack`; raises MalformedTensorFile with a reason for anything else."""
    if not isinstance(blob, bytes | bytearray) or len(blob) < 8:
        raise MalformedTensorFile("too short to be a safetensors file")
    (header_len,) = struct.unpack("<Q", bytes(blob[:8]))
    if header_len > _MAX_HEADER or 8 + header_len > len(blob):
        raise MalformedTensorFile(f"header length {header_len} does not fit a {len(blob)}-byte file")
    try:
        header = json.loads(bytes(blob[8 : 8 + header_len]))
        metadata = header.get("__metadata__") or {}
        document = json.loads(metadata[key])
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise MalformedTensorFile(f"no readable {key!r} document in the metadata ({exc})") from None
    if not isinstance(document, dict):
        raise MalformedTensorFile(f"the {key!r} document is not a JSON object")
    try:
        tensors = load_safetensors(bytes(blob))
    except Exception as exc:  # safetensors raises its own SafetensorError for any malformation
        raise MalformedTensorFile(f"unreadable tensors: {exc}") from None
    return tensors, document
