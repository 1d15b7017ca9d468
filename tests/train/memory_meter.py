"""Peak bytes of live tensors, on any device: what a training step allocates, measured on the CPU.

A dispatch mode sees every tensor an operator returns, including those a kernel's Python wrapper
allocates for C or Triton code to fill; it counts the storages that are new (not those of views and
in-place results, which alias an input) and follows each with a weak reference, so a freed tensor
stops counting. Storages made before the mode starts (weights, Adam state, the data) are therefore
never counted, even when viewed or written inside it. Temporaries inside one operator are not seen,
yet process memory (RSS) grows by what the meter says: 1.253 against 1.250 MiB per network for a
32 x 100 epoch on the C kernels. Triton's interpreter works on its own numpy copies, which a GPU
would not make; they are not tensors and so not counted either.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["PeakLiveBytes"]


class PeakLiveBytes(TorchDispatchMode):
    """`with PeakLiveBytes() as meter: ...`, then `meter.peak`: the most bytes alive at once."""

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                storage = t.untyped_storage()
                known = self._live.get(storage.data_ptr())
                if known is None or known[0].expired():
                    self._live[storage.data_ptr()] = (StorageWeakRef(storage), storage.nbytes())
        self._live = {k: v for k, v in self._live.items() if not v[0].expired()}
        self.peak = max(self.peak, sum(n for _, n in self._live.values()))
        return out
