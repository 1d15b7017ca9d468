"""Models: reference modules, their batched population form, and flat weight layouts.

`get("mlds-gru", seed=...)` returns the reference nn.Module; `population("mlds-gru")` the batched
implementation that trains M networks in one process. The MLDS GRU has its own batched form (and
fused kernels); the classifier families (`digits-mlp`, `digits-cnn`, `digits-transformer`) share the
generic torch.func one, and take sweepable `settings` (width, depth, activation, init).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from mlc.errors import ConfigError, UnknownNameError
from mlc.models._families import (
    ACTIVATIONS,
    INITS,
    ClassifierConfig,
    CNNConfig,
    MLPConfig,
    TransformerConfig,
    with_settings,
)
from mlc.models._func_population import FuncPopulation, classifier_module
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
    "ACTIVATIONS",
    "INITS",
    "MLDS_GRU",
    "AnyPopulation",
    "CNNConfig",
    "ClassifierConfig",
    "FuncPopulation",
    "MLPConfig",
    "TransformerConfig",
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

AnyPopulation = Population | FuncPopulation

_CONFIGS: dict[str, GRUNetConfig | ClassifierConfig] = {
    MLDS_GRU.name: MLDS_GRU,
    "digits-mlp": MLPConfig("digits-mlp"),
    "digits-cnn": CNNConfig("digits-cnn"),
    "digits-transformer": TransformerConfig("digits-transformer"),
}


def names() -> tuple[str, ...]:
    return tuple(_CONFIGS)


def config(name: str, settings: Mapping[str, object] | None = None) -> GRUNetConfig | ClassifierConfig:
    """The config of model `name` with the sweepable `settings` applied (classifier families only)."""
    try:
        base = _CONFIGS[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}; known models: {', '.join(_CONFIGS)}") from None
    if not settings:
        return base
    if isinstance(base, GRUNetConfig):
        raise ConfigError(f"model {name} has a fixed architecture (spec §6) and takes no settings")
    return with_settings(base, dict(settings))


def get(name: str, seed: int = 0, settings: Mapping[str, object] | None = None) -> nn.Module:
    """The reference module `name`, initialised after `manual_seed(seed)` (PyTorch's defaults, or
    the `init` setting)."""
    cfg = config(name, settings)
    if isinstance(cfg, GRUNetConfig):
        return reference_module(cfg, seed)
    return classifier_module(cfg, seed)


def layout(name: str, settings: Mapping[str, object] | None = None) -> Layout:
    return layout_of(get(name, 0, settings), name)


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
    settings: Mapping[str, object] | None = None,
) -> AnyPopulation:
    """The batched implementation of `name`; `gru_layer`, `head_loss` and `head_eval` swap in fused
    kernels, which exchange activations in `layer_layout` (rows when None); `kernels` says which, in
    words; `keeps_gates` False says the recurrence recomputes its gates in the backward; `threads`
    is how many CPU threads train the networks, each a range of them (`run_parallel`).
    A classifier family (with its `settings`) gets the generic torch.func population."""
    cfg = config(name, settings)
    if not isinstance(cfg, GRUNetConfig):
        return FuncPopulation(cfg)
    gru_layer = gru_layer or gru_layer_manual
    return Population(
        cfg,
        gru_layer,
        head_loss,
        layer_layout,
        kernels,
        head_eval,
        keeps_gates=keeps_gates,
        threads=threads,
    )
