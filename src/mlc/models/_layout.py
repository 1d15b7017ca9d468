"""Flat weight layouts: how a network's tensors lie in one float32 vector.

The order is the reference module's `state_dict()` order (spec §6); every dataset ships the layout next
to the weights, and `layout_id` names it so two datasets can be checked for compatibility.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["Layout", "LayoutEntry", "flatten", "layout_of", "unflatten_into"]


@dataclass(frozen=True)
class LayoutEntry:
    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True)
class Layout:
    model: str
    entries: tuple[LayoutEntry, ...]

    @property
    def n_params(self) -> int:
        last = self.entries[-1]
        return last.offset + last.size

    def to_json(self) -> list[dict[str, object]]:
        return [{"name": e.name, "shape": list(e.shape), "offset": e.offset} for e in self.entries]

    @property
    def layout_id(self) -> str:
        """`<model>/<first 12 hex of the SHA-256 of the layout JSON>`."""
        blob = json.dumps(self.to_json(), separators=(",", ":")).encode()
        return f"{self.model}/{hashlib.sha256(blob).hexdigest()[:12]}"

    def tensors(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Name -> that tensor's view of `flat`: `[n_params]` gives the tensors' shapes, `[n,
        n_params]` (several networks, as `Dataset.weights` returns them) a leading `n`."""
        flat = np.asarray(flat)
        if flat.ndim not in (1, 2) or flat.shape[-1] != self.n_params:
            raise ValueError(
                f"weights of shape {list(flat.shape)}: {self.model} takes [{self.n_params}] "
                f"or [n, {self.n_params}]"
            )
        lead = flat.shape[:-1]
        return {
            e.name: flat[..., e.offset : e.offset + e.size].reshape(*lead, *e.shape) for e in self.entries
        }

    def entry(self, name: str) -> LayoutEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)


def layout_of(module: nn.Module, model: str) -> Layout:
    entries, offset = [], 0
    for name, tensor in module.state_dict().items():
        entries.append(LayoutEntry(name, tuple(tensor.shape), offset))
        offset += tensor.numel()
    return Layout(model, tuple(entries))


def flatten(module: nn.Module) -> torch.Tensor:
    """The module's weights as one float32 vector `[n_params]` in layout order."""
    return torch.cat([t.detach().reshape(-1).float() for t in module.state_dict().values()])


def unflatten_into(module: nn.Module, flat: torch.Tensor | np.ndarray) -> nn.Module:
    """Load a flat vector `[n_params]` into the module (in place); returns the module."""
    flat_t = torch.as_tensor(np.asarray(flat, dtype=np.float32))
    if flat_t.ndim != 1:  # [1, n_params] is one network too many dimensions, not a wrong length
        raise ValueError(f"a flat vector [n_params] is loaded, not one of shape {list(flat_t.shape)}")
    state, offset = {}, 0
    for name, tensor in module.state_dict().items():
        n = tensor.numel()
        if offset + n > flat_t.numel():
            raise ValueError(f"flat vector of {flat_t.numel()} values is too short for {name}")
        state[name] = flat_t[offset : offset + n].reshape(tensor.shape).clone()
        offset += n
    if offset != flat_t.numel():
        raise ValueError(f"flat vector has {flat_t.numel()} values, the module {offset}")
    module.load_state_dict(state)
    return module
