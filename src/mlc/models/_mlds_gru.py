"""The `mlds-gru` network (spec §6): a 4-layer GRU followed by a 4-layer MLP, 4,364 parameters.

One config dataclass, the reference nn.Module, and its flat weight layout. The population (batched)
implementation in `_population.py` computes exactly this function for M networks at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["GRUNetConfig", "MLDS_GRU", "GRUNet"]


@dataclass(frozen=True)
class GRUNetConfig:
    """Shape of a GRU-then-MLP sequence tagger; `mlp` lists the hidden widths after the GRU."""

    name: str
    input_size: int
    hidden_size: int
    num_layers: int
    mlp: tuple[int, ...]
    output_size: int
    n_params: int  # asserted against the module at construction, so a shape change is caught

    @property
    def fc_sizes(self) -> tuple[tuple[int, int], ...]:
        """(in, out) of each Linear layer, fc1 first."""
        widths = (self.hidden_size, *self.mlp, self.output_size)
        return tuple(zip(widths[:-1], widths[1:], strict=True))

    def forward_flop(self, n_sequences: int, length: int) -> int:
        """FLOPs of the forward pass over `n_sequences` sequences of `length` steps: two per
        multiply-add of the matrix products (three gates per GRU layer, input and hidden side, then the
        MLP), the elementwise work left out. The one count that benchmarks and credit both use."""
        gates = 3 * self.hidden_size
        gru = gates * (self.input_size + self.hidden_size)
        gru += (self.num_layers - 1) * gates * 2 * self.hidden_size
        mlp = sum(n_in * n_out for n_in, n_out in self.fc_sizes)
        return 2 * (gru + mlp) * n_sequences * length

    def train_flop(self, n_sequences: int, length: int) -> int:
        """FLOPs of training on `n_sequences` sequences (forward, and a backward of twice its cost)."""
        return 3 * self.forward_flop(n_sequences, length)


MLDS_GRU = GRUNetConfig(
    name="mlds-gru",
    input_size=5,
    hidden_size=12,
    num_layers=4,
    mlp=(12, 24, 12),
    output_size=8,
    n_params=4364,
)


class GRUNet(nn.Module):
    """The reference module. Its `state_dict()` order is the flat weight layout of every dataset."""

    def __init__(self, config: GRUNetConfig) -> None:
        super().__init__()
        self.config = config
        self.gru = nn.GRU(config.input_size, config.hidden_size, config.num_layers, batch_first=True)
        for i, (n_in, n_out) in enumerate(config.fc_sizes, start=1):
            self.add_module(f"fc{i}", nn.Linear(n_in, n_out))
        n = sum(p.numel() for p in self.parameters())
        if n != config.n_params:
            raise AssertionError(f"{config.name}: built {n} parameters, the spec says {config.n_params}")

    @property
    def fcs(self) -> list[nn.Linear]:
        return [getattr(self, f"fc{i}") for i in range(1, len(self.config.fc_sizes) + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Commands `[B, L, input]` float -> logits `[B, L, output]`."""
        h, _ = self.gru(x)  # [B, L, H]
        fcs = self.fcs
        for fc in fcs[:-1]:
            h = torch.relu(fc(h))
        return fcs[-1](h)  # [B, L, output]
