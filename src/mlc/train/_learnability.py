"""The learnability check of random automata (spec §4): can reference networks fit this automaton?

The original project lost months to random automata its networks could not learn, so an automaton is
kept only when a few reference networks, trained exactly like the dataset's networks (same model, data
and optimiser) for a fixed epoch budget, reach a validation bit accuracy threshold. All automata and
their networks train as one population. `select_automata` drives the check over candidates k = 0, 1,
2, ... in batches until enough pass or the candidate budget runs out; the work layer records its
outcome in the resolved experiment config, so the check runs once per experiment, not per load.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from mlc import models, tasks
from mlc.errors import ConfigError
from mlc.tasks import DataSpec, SharedData
from mlc.train._config import TrainConfig
from mlc.train._data import TrainingArrays
from mlc.train._state import PopulationState
from mlc.train._trainer import PopulationTrainer

__all__ = [
    "AutomataSelection",
    "AutomatonVerdict",
    "LearnabilityReport",
    "LearnabilitySettings",
    "SelectionProgress",
    "check_learnability",
    "select_automata",
]

PopulationFactory = Callable[[str, torch.device], models.Population]


def _pytorch_population(model: str, device: torch.device) -> models.Population:
    return models.population(model)


@dataclass(frozen=True)
class LearnabilitySettings:
    """How the check judges an automaton: `networks` reference networks train for up to `epochs`
    epochs; a network fits when its validation bit accuracy reaches `threshold`; the automaton is kept
    when at least `fit_fraction` of its networks (and at least one) fit. `max_candidates` bounds the
    automata tried in all (the rejection budget) and `batch` the automata trained in one population.

    `n_train` and `length` (None: all) cut the experiment's data to its first `n_train` training
    sequences and every sequence to its first `length` steps: the same inputs, so the same automata,
    at a fraction of the cost, because what these networks need is Adam steps, not long sequences.
    """

    networks: int = 3
    epochs: int = 60
    threshold: float = 0.99
    fit_fraction: float = 0.0
    max_candidates: int = 200
    batch: int = 100
    n_train: int | None = None
    length: int | None = None

    def __post_init__(self) -> None:
        for key in ("networks", "epochs", "max_candidates", "batch", "n_train", "length"):
            value = getattr(self, key)
            if value is None and key in ("n_train", "length"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"learnability.{key} must be a whole number >= 1, got {value!r}")
        for key in ("threshold", "fit_fraction"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"learnability.{key} must be a number, got {value!r}")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"learnability.threshold must lie in (0, 1], got {self.threshold!r}")
        if not 0 <= self.fit_fraction <= 1:
            raise ConfigError(f"learnability.fit_fraction must lie in [0, 1], got {self.fit_fraction!r}")

    @property
    def required(self) -> int:
        """Networks of an automaton that must fit for it to be kept."""
        return max(1, math.ceil(self.fit_fraction * self.networks - 1e-9))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AutomatonVerdict:
    """One automaton's outcome: its networks' best final validation accuracy and loss."""

    task: str
    kept: bool
    n_fitted: int
    best_val_accuracy: float
    best_val_loss: float
    epochs_run: int  # the most epochs any of its networks ran

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LearnabilityReport:
    """Verdicts in the order the automata were given, and the settings that produced them."""

    verdicts: tuple[AutomatonVerdict, ...]
    settings: LearnabilitySettings

    @property
    def kept(self) -> tuple[str, ...]:
        return tuple(v.task for v in self.verdicts if v.kept)

    @property
    def rejected(self) -> tuple[str, ...]:
        return tuple(v.task for v in self.verdicts if not v.kept)


def reference_seed(seed: int, task: str, index: int) -> int:
    """Init seed of reference network `index` of `task`; tagged so it never equals a dataset network's."""
    digest = hashlib.sha256(f"learnability:{seed}:{task}:{index}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def check_learnability(
    task_names: Sequence[str],
    data: SharedData,
    settings: LearnabilitySettings,
    train: TrainConfig,
    *,
    model: str = "mlds-gru",
    seed: int = 0,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, tuple[bool, ...]], None] | None = None,
    population_factory: PopulationFactory | None = None,
) -> LearnabilityReport:
    """Train `settings.networks` reference networks per task, all in one population, and judge each.

    `data` must hold the targets of every named task. Training uses `train` (lr, batch size) with the
    epoch budget `settings.epochs`; a network stops as soon as it fits, and an automaton's remaining
    networks stop once enough of them fit, so easy automata cost little. `on_epoch(epochs_done,
    kept)` is called after every epoch, `kept` saying which automata are already kept.
    `population_factory(model, device)` builds the population that trains (the worker runtime's
    kernel choice, `mlc.work.population_for`); None trains on the PyTorch path.
    """
    names = list(task_names)
    missing = [t for t in names if t not in data.train_targets]
    if missing:
        raise ConfigError(f"the learnability data holds no targets for {missing}")
    if len(set(names)) != len(names):
        raise ConfigError("an automaton is named twice in the learnability check")
    n_net = settings.networks
    member_tasks = [t for t in names for _ in range(n_net)]  # member m belongs to names[m // n_net]
    seeds = [reference_seed(seed, t, i) for t in names for i in range(n_net)]
    population = (population_factory or _pytorch_population)(model, torch.device(device))
    arrays = TrainingArrays.from_shared(data, names, device)
    state = PopulationState.fresh(population.init(seeds)).to(device)
    # "converged" means "fits": stop at the accuracy threshold, whatever the loss.
    rule = replace(train, max_epochs=settings.epochs, stop_val_loss=math.inf,
                   stop_val_accuracy=settings.threshold)
    trainer = PopulationTrainer(population, rule)
    final_acc = np.zeros(len(seeds), dtype=np.float64)
    final_loss = np.full(len(seeds), np.inf)
    epochs_run = np.zeros(len(seeds), dtype=np.int64)
    for epoch in range(settings.epochs):
        if bool(state.stopped.all()):
            break
        history = trainer.train(state, seeds, member_tasks, arrays, 1)
        ran = history.n_epochs > 0
        final_acc[ran], final_loss[ran] = history.val_accuracy[ran, 0], history.val_loss[ran, 0]
        epochs_run[ran] += 1
        kept = _retire_decided(state, settings)
        if on_epoch is not None:
            on_epoch(epoch + 1, tuple(kept.tolist()))
    fitted = state.converged.cpu().numpy().reshape(len(names), n_net)
    verdicts = tuple(
        AutomatonVerdict(
            task=t,
            kept=int(fitted[i].sum()) >= settings.required,
            n_fitted=int(fitted[i].sum()),
            best_val_accuracy=float(final_acc[i * n_net : (i + 1) * n_net].max()),
            best_val_loss=float(final_loss[i * n_net : (i + 1) * n_net].min()),
            epochs_run=int(epochs_run[i * n_net : (i + 1) * n_net].max()),
        )
        for i, t in enumerate(names)
    )
    return LearnabilityReport(verdicts, settings)


def _retire_decided(state: PopulationState, settings: LearnabilitySettings) -> torch.Tensor:
    """Stop the still-training networks of automata that already have enough fitted networks;
    returns which automata are kept, bool [n_automata]."""
    n_net = settings.networks
    kept = state.converged.view(-1, n_net).sum(dim=1) >= settings.required  # [n_automata]
    state.stopped |= kept.repeat_interleave(n_net)
    return kept.cpu()


@dataclass(frozen=True)
class SelectionProgress:
    """Handed to the progress callback after every epoch of a batch of the selection."""

    batch: int  # 1-based
    batch_size: int  # candidates in this batch
    epochs_done: int
    epochs: int
    n_tried: int  # candidates decided in earlier batches
    n_kept: int  # automata kept so far, this batch included
    count: int  # automata wanted


@dataclass(frozen=True)
class AutomataSelection:
    """The outcome of `select_automata`: the kept names in order and every verdict made."""

    kept: tuple[str, ...]
    verdicts: tuple[AutomatonVerdict, ...]

    @property
    def n_tried(self) -> int:
        return len(self.verdicts)

    @property
    def rejected(self) -> tuple[str, ...]:
        return tuple(v.task for v in self.verdicts if not v.kept)


def select_automata(
    count: int,
    task_params: dict[str, Any],
    data_spec: DataSpec,
    settings: LearnabilitySettings,
    train: TrainConfig,
    *,
    model: str = "mlds-gru",
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Callable[[SelectionProgress], None] | None = None,
    population_factory: PopulationFactory | None = None,
) -> AutomataSelection:
    """The first `count` learnable `RandomAutomaton-<k>` (k = 0, 1, ...; `task_params` = seed, n_states).

    Candidates are checked in batches: the first batch is `count` automata (capped by `settings.batch`),
    each later one what is still missing scaled by the pass rate so far. Automata past the `count`-th
    kept one are checked but not kept. Raises ConfigError once `settings.max_candidates` are spent.
    """
    kept: list[str] = []
    verdicts: list[AutomatonVerdict] = []
    batch_no = 0
    while len(kept) < count:
        size = _next_batch_size(count - len(kept), verdicts, settings)
        if size == 0:
            raise ConfigError(_budget_message(count, kept, settings))
        start = len(verdicts)
        names = [f"RandomAutomaton-{k}" for k in range(start, start + size)]
        data = _cut(tasks.make_shared_data(data_spec, [tasks.get(n, **task_params) for n in names]),
                    settings)
        batch_no += 1

        def report(done: int, now: tuple[bool, ...], _no: int = batch_no, _size: int = size) -> None:
            if progress is not None:
                progress(SelectionProgress(_no, _size, done, settings.epochs, len(verdicts),
                                           min(count, len(kept) + sum(now)), count))

        result = check_learnability(names, data, settings, train, model=model, seed=seed, device=device,
                                    population_factory=population_factory,
                                    on_epoch=report)
        verdicts.extend(result.verdicts)
        kept.extend(result.kept[: count - len(kept)])
    return AutomataSelection(tuple(kept), tuple(verdicts))


def _cut(data: SharedData, settings: LearnabilitySettings) -> SharedData:
    """The first `n_train` training sequences and the first `length` steps of every sequence (a
    prefix of a sequence has the prefix of its targets: every automaton starts in its start state).
    `spec` still names the full data they were cut from."""
    n, length = settings.n_train, settings.length
    return SharedData(
        spec=data.spec,
        train_inputs=data.train_inputs[:n, :length],
        val_inputs=data.val_inputs[:, :length],
        train_targets={t: y[:n, :length] for t, y in data.train_targets.items()},
        val_targets={t: y[:, :length] for t, y in data.val_targets.items()},
    )


def _next_batch_size(missing: int, verdicts: list[AutomatonVerdict], settings: LearnabilitySettings) -> int:
    passed = sum(v.kept for v in verdicts)
    rate = passed / len(verdicts) if verdicts else 1.0
    want = missing if rate >= 1 else math.ceil(missing / max(rate, 0.1))
    return max(0, min(want, settings.batch, settings.max_candidates - len(verdicts)))


def _budget_message(count: int, kept: list[str], settings: LearnabilitySettings) -> str:
    return (
        f"random automata: only {len(kept)} of {count} wanted automata passed the learnability check in "
        f"{settings.max_candidates} candidates (networks {settings.networks}, epochs {settings.epochs}, "
        f"threshold {settings.threshold}); raise learnability.max_candidates or learnability.epochs, or "
        "use fewer n_states"
    )
