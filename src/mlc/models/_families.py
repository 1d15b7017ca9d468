"""Model families beside the MLDS GRU: a multilayer perceptron, a LeNet-like CNN and a small
Transformer encoder, all classifiers of small images `[B, C, H, W]` into `n_classes` logits.

One config dataclass per family with the settings a sweep may vary (width, depth, activation,
initialisation), the reference nn.Module of each, and `build` to make the module for a config. The
batched form of every family is the generic `FuncPopulation` (torch.func over stacked parameters),
which computes exactly these modules' function for M networks at once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mlc.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "CNNConfig",
    "ClassifierConfig",
    "MLPConfig",
    "TransformerConfig",
    "build",
    "with_settings",
]

ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "gelu": F.gelu, "sigmoid": torch.sigmoid}
INITS = ("default", "xavier", "kaiming", "normal")


@dataclass(frozen=True)
class ClassifierConfig:
    """What every family shares: the image it reads, the classes it outputs, and the sweepable
    `activation` and `init` (the layout does not depend on them)."""

    name: str
    in_channels: int = 1
    image_size: int = 8
    n_classes: int = 10
    activation: str = "relu"
    init: str = "default"

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"model activation {self.activation!r}; known: {', '.join(ACTIVATIONS)}")
        if self.init not in INITS:
            raise ConfigError(f"model init {self.init!r}; known: {', '.join(INITS)}")
        for key in ("in_channels", "image_size", "n_classes", *self._sizes()):
            if getattr(self, key) < 1:
                raise ConfigError(f"model {key} must be at least 1, got {getattr(self, key)}")

    def _sizes(self) -> tuple[str, ...]:
        return ()

    @property
    def n_inputs(self) -> int:
        return self.in_channels * self.image_size * self.image_size

    def settings(self) -> dict[str, object]:
        """The sweepable settings, as a network records them."""
        return {k: getattr(self, k) for k in ("width", "depth", "activation", "init")}

    def forward_flop(self, n_sequences: int, length: int) -> int:
        """FLOPs of the forward pass over `n_sequences` images (`length` is the sequence models'; an
        image has none): the matrix products and convolutions of the reference module, as
        `torch.utils.flop_counter` counts them on one image. The count that credit uses."""
        return _flop_per_image(self) * n_sequences

    def train_flop(self, n_sequences: int, length: int) -> int:
        """FLOPs of training on `n_sequences` images (forward, and a backward of twice its cost)."""
        return 3 * self.forward_flop(n_sequences, length)


@dataclass(frozen=True)
class MLPConfig(ClassifierConfig):
    """`depth` hidden layers of `width` units on the flattened image."""

    width: int = 32
    depth: int = 2

    def _sizes(self) -> tuple[str, ...]:
        return ("width", "depth")


@dataclass(frozen=True)
class CNNConfig(ClassifierConfig):
    """LeNet-like: `depth` blocks of 3x3 convolution (padding 1), activation and 2x2 max-pooling,
    the first with `width` channels and each next one twice as many, then a hidden layer of 2 x
    `width` units and the output layer."""

    width: int = 6
    depth: int = 2

    def _sizes(self) -> tuple[str, ...]:
        return ("width", "depth")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size >> self.depth < 1:
            raise ConfigError(f"model depth {self.depth} pools a {self.image_size}-pixel image below 1 pixel")

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(self.width * 2**i for i in range(self.depth))


@dataclass(frozen=True)
class TransformerConfig(ClassifierConfig):
    """Each image row is a token (`image_size` tokens of `in_channels * image_size` values): a
    linear embedding of `width` features plus a learned position, `depth` pre-norm encoder blocks
    (`heads`-head self-attention, then a 2 x `width` feed-forward layer), mean over the tokens, and
    the output layer."""

    width: int = 16
    depth: int = 1
    heads: int = 2

    def _sizes(self) -> tuple[str, ...]:
        return ("width", "depth", "heads")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.width % self.heads:
            raise ConfigError(f"model width {self.width} is not a multiple of heads {self.heads}")


def with_settings(config: ClassifierConfig, settings: dict[str, object]) -> ClassifierConfig:
    """`config` with the sweepable `settings` (width, depth, activation, init) replaced."""
    allowed = {"width", "depth", "activation", "init"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ConfigError(f"unknown model settings {unknown}; known: {sorted(allowed)}")
    for key in ("width", "depth"):
        value = settings.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"model.{key} must be a whole number, got {value!r}")
    return dataclasses.replace(config, **settings)  # type: ignore[arg-type]


class MLP(nn.Module):
    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        widths = (config.n_inputs, *(config.width,) * config.depth, config.n_classes)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images `[B, C, H, W]` -> logits `[B, n_classes]`."""
        act = ACTIVATIONS[self.config.activation]
        h = x.flatten(1)  # [B, C*H*W]
        for layer in self.layers[:-1]:
            h = act(layer(h))
        return self.layers[-1](h)


class LeNet(nn.Module):
    def __init__(self, config: CNNConfig) -> None:
        super().__init__()
        self.config = config
        chans = (config.in_channels, *config.channels)
        pairs = zip(chans[:-1], chans[1:], strict=True)
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, padding=1) for i, o in pairs)
        side = config.image_size >> config.depth
        self.fc = nn.Linear(chans[-1] * side * side, 2 * config.width)
        self.out = nn.Linear(2 * config.width, config.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images `[B, C, H, W]` -> logits `[B, n_classes]`."""
        act = ACTIVATIONS[self.config.activation]
        for conv in self.convs:
            x = F.max_pool2d(act(conv(x)), 2)  # [B, c_i, H / 2^i, W / 2^i]
        return self.out(act(self.fc(x.flatten(1))))


class EncoderBlock(nn.Module):
    """Pre-norm self-attention and feed-forward, written out (no fused fast paths) so torch.func
    transforms it like any other function."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.ff1 = nn.Linear(width, 2 * width)
        self.ff2 = nn.Linear(2 * width, width)

    def forward(self, h: torch.Tensor, act: object) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # [B, heads, T, d / heads]
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)  # [B, heads, T, T]
        h = h + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
        return h + self.ff2(act(self.ff1(self.norm2(h))))  # type: ignore[operator]


class TinyTransformer(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Linear(config.in_channels * config.image_size, config.width)
        self.position = nn.Parameter(torch.randn(config.image_size, config.width) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(config.width, config.heads) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width)
        self.out = nn.Linear(config.width, config.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images `[B, C, H, W]` -> logits `[B, n_classes]`."""
        act = ACTIVATIONS[self.config.activation]
        tokens = x.permute(0, 2, 1, 3).flatten(2)  # [B, H, C*W]: one token per row
        h = self.embed(tokens) + self.position  # [B, H, width]
        for block in self.blocks:
            h = block(h, act)
        return self.out(self.norm(h).mean(dim=1))  # [B, n_classes]


_MODULES: dict[type, type[nn.Module]] = {MLPConfig: MLP, CNNConfig: LeNet, TransformerConfig: TinyTransformer}


@functools.cache
def _flop_per_image(config: ClassifierConfig) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.random.fork_rng(devices=[]):  # building draws weights: leave the caller's RNG alone
        module = build(config)
    image = torch.zeros(1, config.in_channels, config.image_size, config.image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(image)
    return int(counter.get_total_flops())


def build(config: ClassifierConfig) -> nn.Module:
    """The reference module of `config`, initialised from the current RNG (PyTorch's defaults, or
    `config.init` applied to every weight matrix and kernel; biases keep theirs)."""
    module = _MODULES[type(config)](config)  # type: ignore[call-arg]
    if config.init != "default":
        for sub in module.modules():
            if isinstance(sub, nn.Linear | nn.Conv2d):
                _initialise(sub.weight, config.init)
    return module


def _initialise(weight: torch.Tensor, init: str) -> None:
    with torch.no_grad():
        if init == "xavier":
            nn.init.xavier_uniform_(weight)
        elif init == "kaiming":
            nn.init.kaiming_normal_(weight, nonlinearity="relu")
        else:  # "normal"
            nn.init.normal_(weight, std=0.05)
