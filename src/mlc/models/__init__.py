"""Models: reference modules, their batched population form, and flat weight layouts.

`get("mlds-gru", seed=...)` returns the reference nn.Module; `population("mlds-gru")` the batched
implementation that trains M networks in one process.
"""

from __future__ import annotations

from mlc.errors import UnknownNameError
from mlc.models._gru_manual import gru_layer_manual
from mlc.models._layout import Layout, LayoutEntry, flatten, layout_of, unflatten_into
from mlc.models._mlds_gru import MLDS_GRU, GRUNet, GRUNetConfig
from mlc.models._population import (
    GRULayerFn,
    HeadEvalFn,
    HeadLossFn,
    LayerLayout,
    Population,
    from_batch_major,
    reference_module,
)
from mlc.models.native._kernels import (
    model_ranges,
    native_available,
    native_build_note,
    native_threads,
    native_unavailable_reason,
    run_parallel,
)
from mlc.models.native._kernels import set_threads as set_native_threads

__all__ = [
    "MLDS_GRU",
    "GRULayerFn",
    "HeadEvalFn",
    "HeadLossFn",
    "LayerLayout",
    "GRUNet",
    "GRUNetConfig",
    "Layout",
    "LayoutEntry",
    "Population",
    "config",
    "flatten",
    "from_batch_major",
    "get",
    "gru_layer_manual",
    "layout",
    "layout_of",
    "model_ranges",
    "names",
    "native_available",
    "native_build_note",
    "native_threads",
    "native_unavailable_reason",
    "population",
    "run_parallel",
    "set_native_threads",
    "unflatten_into",
]

_CONFIGS: dict[str, GRUNetConfig] = {MLDS_GRU.name: MLDS_GRU}


def names() -> tuple[str, ...]:
    return tuple(_CONFIGS)


def config(name: str) -> GRUNetConfig:
    try:
        return _CONFIGS[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}; known models: {', '.join(_CONFIGS)}") from None


def get(name: str, seed: int = 0) -> GRUNet:
    """The reference module `name`, initialised with PyTorch's defaults after `manual_seed(seed)`."""
    return reference_module(config(name), seed)


def layout(name: str) -> Layout:
    return layout_of(GRUNet(config(name)), name)


def population(
    name: str,
    gru_layer: GRULayerFn | None = None,
    head_loss: HeadLossFn | None = None,
    layer_layout: LayerLayout | None = None,
    *,
    kernels: str = "PyTorch GRU",
    head_eval: HeadEvalFn | None = None,
    keeps_gates: bool = True,
    threads: int = 1,
) -> Population:
    """The batched implementation of `name`; `gru_layer`, `head_loss` and `head_eval` swap in fused
    kernels, which exchange activations in `layer_layout` (rows when None); `kernels` says which, in
    words; `keeps_gates` False says the recurrence recomputes its gates in the backward; `threads`
    is how many CPU threads train the networks, each a range of them (`run_parallel`)."""
    gru_layer = gru_layer or gru_layer_manual
    return Population(
        config(name),
        gru_layer,
        head_loss,
        layer_layout,
        kernels,
        head_eval,
        keeps_gates=keeps_gates,
        threads=threads,
    )
