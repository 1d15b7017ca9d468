"""A population of M networks of one architecture, trained as one batched computation.

Parameters live in one float32 matrix `[M, n_params]` in the layout order, so the optimiser, the
serialisation and the dataset all see the same flat vectors; the forward pass takes per-layer views
of that matrix. Member m starts from exactly the weights the reference module gets for its seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

from mlc.models._gru_manual import gru_layer_manual
from mlc.models._layout import Layout, flatten, layout_of
from mlc.models._mlds_gru import GRUNet, GRUNetConfig

__all__ = [
    "GRULayerFn",
    "HeadEvalFn",
    "HeadLossFn",
    "Population",
    "from_batch_major",
    "reference_module",
]

# Time-major, per model: (x [M,L,B,I], w_ih [M,3H,I], w_hh [M,3H,H], b_ih [M,3H], b_hh [M,3H]) -> h [M,L,B,H].
# Time-major keeps each step's [M, B, *] block contiguous, which the CPU recurrence needs to be fast.
# With a `LayerLayout`, x and h are in that layout instead of rows.
GRULayerFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# (h from the last GRU layer, in the layers' layout, targets y [M,L,B,O] as rows, [(w [M,out,in],
# b [M,out]) per Linear]) -> mean BCE-with-logits per model [M]: the MLP head and the loss, fused.
HeadLossFn = Callable[[torch.Tensor, torch.Tensor, Sequence[tuple[torch.Tensor, torch.Tensor]]], torch.Tensor]
# The same arguments -> (mean BCE per model [M], outputs per model whose sign agrees with the target
# [M] as floats), without gradients: evaluation through a fused head, which writes no logits.
HeadEvalFn = Callable[
    [torch.Tensor, torch.Tensor, Sequence[tuple[torch.Tensor, torch.Tensor]]],
    tuple[torch.Tensor, torch.Tensor],
]


class LayerLayout(Protocol):
    """How a population's GRU layers hold activations when not as rows [M, L, B, C] (a kernel's own
    layout, kept from the first layer to the head so nothing is transposed in between)."""

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        """Rows [M, L, B, C] -> the layout."""
        ...

    def leave(self, h: torch.Tensor, batch: int) -> torch.Tensor:
        """The layout -> rows [M, L, batch, C] (a view where possible)."""
        ...

    def padded(self, batch: int) -> int:
        """How many sequences the layout holds for a batch of `batch` (what memory is sized by)."""
        ...


def from_batch_major(layer: GRULayerFn) -> GRULayerFn:
    """Adapt a layer written for x [M, B, L, I] -> h [M, B, L, H] to the time-major contract (views only)."""

    def time_major(x: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        return layer(x.transpose(1, 2), *weights).transpose(1, 2)

    return time_major


def reference_module(config: GRUNetConfig, seed: int) -> GRUNet:
    """The reference module initialised by PyTorch's defaults after `torch.manual_seed(seed)`.

    The global RNG is forked, so building a network does not disturb the caller's random stream.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GRUNet(config)


class Population:
    """The batched (functional) form of `GRUNet` for M networks at once."""

    def __init__(
        self,
        config: GRUNetConfig,
        gru_layer: GRULayerFn = gru_layer_manual,
        head_loss: HeadLossFn | None = None,
        layer_layout: LayerLayout | None = None,
        kernels: str = "PyTorch GRU",
        head_eval: HeadEvalFn | None = None,
        *,
        keeps_gates: bool = True,
        threads: int = 1,
    ) -> None:
        self.config = config
        self.layout: Layout = layout_of(GRUNet(config), config.name)
        self.gru_layer = gru_layer
        self.head_loss = head_loss
        self.head_eval = head_eval
        self.layer_layout = layer_layout
        self.kernels = kernels  # what trains, in words, for people (`mlc run` prints it)
        # whether the recurrence keeps its gates for the backward (PyTorch) or only each layer's
        # output (fused kernels recompute them): what its memory is estimated by
        self.keeps_gates = keeps_gates
        # CPU threads that train it, each a contiguous range of its networks (the trainer's pieces,
        # `run_parallel`); a CPU population is sized per thread
        self.threads = threads

    @property
    def n_params(self) -> int:
        return self.layout.n_params

    def step_floats(self, batch: int, length: int) -> int:
        """Floats one network's training step (`loss_and_grad` on gathered inputs and targets) holds at
        its peak for a mini-batch of `batch` sequences of `length` steps: what decides how many
        networks fit on a device, as the weights and Adam state are small beside it.

        Counted per row (one sequence at one time step) from what each path keeps, and checked
        against the bytes it allocates (tests/train/test_sizing.py; mlds-gru with fused heads: 97 per
        row, measured 90 on the C kernels and 97 on Triton):
        - the gathered inputs and targets;
        - the PyTorch recurrence saves five H-wide tensors per step and layer (hidden state, r, z, n
          and n's recurrent pre-activation) beside its output, and its backward 3H of gate gradients;
          fused kernels (C, Triton) save only each layer's output (the next one's input) and
          recompute the gates; beside them one copy of the first input (C: into its lane layout) or
          of a gradient (Triton), and at the top of the backward the gradient it returns;
        - the head returns a gradient as wide as h; the PyTorch head also keeps every Linear layer's
          output, and the logits' loss and its gradient.
        What the layers hold is in their layout, whose batch the C kernels pad to whole vectors; the
        data and the PyTorch head's activations are rows.
        """
        c = self.config
        if self.keeps_gates:
            layers = 6 * c.hidden_size * c.num_layers + 3 * c.hidden_size
        else:
            layers = max(c.input_size, c.hidden_size) + (c.num_layers + 1) * c.hidden_size
        layers += c.hidden_size  # the gradient the head returns
        rows = c.input_size + c.output_size
        if self.head_loss is None:
            rows += sum(c.mlp) + 3 * c.output_size
        padded = batch if self.layer_layout is None else self.layer_layout.padded(batch)
        return length * (padded * layers + batch * rows)

    def init(self, seeds: Sequence[int]) -> torch.Tensor:
        """Initial weights `[M, n_params]` float32, row m = the reference module for `seeds[m]`."""
        return torch.stack([flatten(reference_module(self.config, int(s))) for s in seeds])

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named per-layer views `[M, *shape]` into `flat` `[M, n_params]` (no copies)."""
        m = flat.shape[0]
        return {e.name: flat[:, e.offset : e.offset + e.size].view(m, *e.shape) for e in self.layout.entries}

    def forward(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Weights `[M, n_params]`, commands `[M, B, L, input]` float -> logits `[M, B, L, output]`."""
        logits = self.forward_views(self.views(flat), x.transpose(1, 2).contiguous())
        return logits.transpose(1, 2)  # a view

    def forward_views(self, v: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The time-major core: per-layer weights `v` (as from `views`), commands `[M, L, B, input]`
        -> logits `[M, L, B, output]`. Trainers call this with the views as separate autograd leaves,
        so each weight's gradient is computed once instead of being scattered into a full-size one."""
        h = self._recurrence(v, x)
        if self.layer_layout is not None:
            h = self.layer_layout.leave(h, x.shape[2])
        m, length, b, hidden = h.shape
        h = h.reshape(m, length * b, hidden)
        fcs = self._fcs(v)
        for i, (w, bias) in enumerate(fcs, start=1):
            h = torch.baddbmm(bias.unsqueeze(1), h, w.transpose(1, 2))  # [M, L*B, out_i]
            if i < len(fcs):
                h = torch.relu(h)
        return h.view(m, length, b, -1)

    def loss_views(self, v: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean BCE-with-logits per network `[M]` of commands `x` `[M, L, B, input]` against targets
        `y` `[M, L, B, output]` (float 0/1): what training minimises, through `head_loss` when set."""
        if self.head_loss is not None:
            return self.head_loss(self._recurrence(v, x), y, self._fcs(v))
        return _mean_bce(self.forward_views(v, x), y)

    @torch.no_grad()
    def loss_and_correct_views(
        self, v: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For evaluation: `loss_views`' loss [M] and the number of outputs whose sign agrees with
        the target ((logit > 0) == (y > 0.5)) per network [M] as floats, through `head_eval` when set
        (measured on the C kernels: evaluation 1.65x faster than through the PyTorch head)."""
        if self.head_eval is not None:
            return self.head_eval(self._recurrence(v, x), y, self._fcs(v))
        logits = self.forward_views(v, x)
        return _mean_bce(logits, y), ((logits > 0) == (y > 0.5)).sum(dim=(1, 2, 3)).float()

    def loss_and_grad(
        self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each network's loss `[M]` (as `loss_views`) and its gradient `[M, n_params]` in the layout
        order, for weights `params` `[M, n_params]`. Each layer's view is its own autograd leaf, so no
        gradient is scattered into a full-size matrix before the final concatenation."""
        leaves = {k: w.detach().requires_grad_(True) for k, w in self.views(params).items()}
        loss = self.loss_views(leaves, x, y)
        grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
        return loss.detach(), torch.cat([g.reshape(params.shape[0], -1) for g in grads], dim=1)

    def _recurrence(self, v: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The GRU stack on rows x; its output stays in the layers' layout."""
        h = x if self.layer_layout is None else self.layer_layout.enter(x)
        for layer in range(self.config.num_layers):
            h = self.gru_layer(
                h,
                v[f"gru.weight_ih_l{layer}"],
                v[f"gru.weight_hh_l{layer}"],
                v[f"gru.bias_ih_l{layer}"],
                v[f"gru.bias_hh_l{layer}"],
            )
        return h

    def _fcs(self, v: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(v[f"fc{i}.weight"], v[f"fc{i}.bias"]) for i in range(1, len(self.config.fc_sizes) + 1)]


def _mean_bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits per network of logits against targets, both `[M, L, B, output]`."""
    return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(dim=(1, 2, 3))
