"""The generic batched path: M networks of any family trained as one computation with torch.func.

Parameters live in one float32 matrix `[M, n_params]` in the layout order, as for the GRU; each
step takes per-layer views of it, and `vmap` runs the reference module's own forward
(`functional_call`) over the leading network dimension, with `grad` inside it, so each network's
gradient is its own. The result is the reference module's function, network by network, without a
hand-written batched form per family.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, vmap

from mlc.models._families import ClassifierConfig, build
from mlc.models._layout import Layout, flatten, layout_of

__all__ = ["FuncPopulation", "classifier_module"]


def classifier_module(config: ClassifierConfig, seed: int) -> torch.nn.Module:
    """The reference module of `config` initialised after `torch.manual_seed(seed)` (the global RNG
    is forked, so building one does not disturb the caller's random stream)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(config)


class FuncPopulation:
    """The batched form of a classifier family (`ClassifierConfig`) for M networks at once.

    Inputs are images `[M, B, C, H, W]` (each network its own batch), targets class indices
    `[M, B]` int64; the loss is each network's mean cross-entropy."""

    def __init__(self, config: ClassifierConfig, kernels: str = "torch.func (vmap)") -> None:
        self.config = config
        self._module = build(config)  # the function; its own weights are never used
        self.layout: Layout = layout_of(self._module, config.name)
        self.kernels = kernels
        self.threads = 1  # PyTorch's own threads parallelise the batched ops
        self._outputs_per_image = _outputs_per_image(self._module, config)
        self._loss_grad = vmap(grad_and_value(self._loss_one))
        self._eval = vmap(self._eval_one)

    @property
    def n_params(self) -> int:
        return self.layout.n_params

    def step_floats(self, batch: int, length: int) -> int:
        """Floats one network's training step holds at its peak, for sizing: per image, the image and
        three times every layer's output (what autograd saves, the gradient flowing back, and a
        temporary), counted once on a real forward. `length` is unused (a sequence length; images
        have none)."""
        del length
        return batch * (self.config.n_inputs + 3 * self._outputs_per_image)

    def init(self, seeds: Sequence[int]) -> torch.Tensor:
        """Initial weights `[M, n_params]` float32, row m = the reference module for `seeds[m]`."""
        return torch.stack([flatten(classifier_module(self.config, int(s))) for s in seeds])

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named per-layer views `[M, *shape]` into `flat` `[M, n_params]` (no copies)."""
        m = flat.shape[0]
        return {e.name: flat[:, e.offset : e.offset + e.size].view(m, *e.shape) for e in self.layout.entries}

    def forward(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Weights `[M, n_params]`, images `[M, B, C, H, W]` -> logits `[M, B, n_classes]`."""
        return vmap(self._logits)(self.views(flat), x)

    def loss_and_grad(
        self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each network's mean cross-entropy `[M]` and its gradient `[M, n_params]` in layout order."""
        grads, loss = self._loss_grad(self.views(params.detach()), x, y)
        m = params.shape[0]
        return loss.detach(), torch.cat([grads[e.name].reshape(m, -1) for e in self.layout.entries], dim=1)

    @torch.no_grad()
    def loss_and_correct(
        self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For evaluation: summed cross-entropy `[M]` and the number of correct argmax predictions
        `[M]`, both float32, of images `x` `[M, B, C, H, W]` against labels `y` `[M, B]`."""
        return self._eval(self.views(params), x, y)

    def _logits(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._module, params, (x,))

    def _loss_one(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self._logits(params, x), y)

    def _eval_one(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self._logits(params, x)
        loss = F.cross_entropy(logits, y, reduction="sum")
        return loss, (logits.argmax(dim=-1) == y).sum().float()


@torch.no_grad()
def _outputs_per_image(module: torch.nn.Module, config: ClassifierConfig) -> int:
    """How many floats every submodule's outputs hold, summed, for one image: a forward with hooks."""
    counted = [0]

    def count(_: torch.nn.Module, __: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            counted[0] += output.numel()

    hooks = [m.register_forward_hook(count) for m in module.modules() if m is not module]
    try:
        module(torch.zeros(1, config.in_channels, config.image_size, config.image_size))
    finally:
        for hook in hooks:
            hook.remove()
    return counted[0]
