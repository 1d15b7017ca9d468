"""Segment replay: the validator trains one segment of a unit again, from the state the worker
uploaded at its start, on the server's own data, and compares with the state uploaded at its end.

This is the idea of Proof-of-Learning (Jia et al., IEEE S&P 2021), which fits this platform unusually
well: the data, the batch order and the start state of every segment are fixed by the spec, so an
honest worker's segment is reproducible, bit for bit on a host of the same kernel class, and within
a measured tolerance across classes. A result trained on other targets, with an invented history,
with fewer epochs than it claims, or from another start fails the replay of any segment it falsified.
Replaying one segment of k costs the server 1/k of the unit's training.

Across kernel classes the tolerance is relative to how far the segment moved the weights: an honest
replay on other hardware lands within a small fraction of the segment's own update (float rounding,
grown through the epochs), a falsified one as far as the update itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mlc.errors import ResultRejected
from mlc.models import AnyPopulation
from mlc.train import AnyArrays, EpochHistory, PopulationState, PopulationTrainer
from mlc.work._result import WorkUnitResult
from mlc.work._spec import WorkUnitSpec

__all__ = ["ReplayTolerance", "replay_segment", "segment_bounds"]


@dataclass(frozen=True)
class ReplayTolerance:
    """How far a replay on another kernel class may land from the uploaded end state: `relative`
    of the distance the segment moved each network's weights (measured honest drift across the CPU
    paths is in benchmarks/NOTES.md, "Replicas and segment replay"), and `loss_abs` on each epoch's
    recorded losses and accuracies."""

    relative: float = 0.02
    loss_abs: float = 2e-3


def segment_bounds(spec: WorkUnitSpec, segment: int) -> tuple[int, int]:
    """(first epoch, end epoch) of `segment` within the unit, epochs counted from 0."""
    bounds = (0, *spec.boundaries, spec.epochs)
    if not 0 <= segment < len(bounds) - 1:
        raise ValueError(f"segment {segment} of a unit with {len(bounds) - 1} segments")
    return bounds[segment], bounds[segment + 1]


def replay_segment(
    spec: WorkUnitSpec,
    result: WorkUnitResult,
    unit_start: PopulationState,
    segment: int,
    population: AnyPopulation,
    data: AnyArrays,
    *,
    exact: bool,
    tolerance: ReplayTolerance = ReplayTolerance(),
) -> None:
    """Raise ResultRejected("replay", ...) unless training `segment` again reproduces the result's
    state at the segment's end and its history for the segment's epochs. `unit_start` is the state
    the unit started from (the server's: fresh initial weights, or the continuation's state);
    `exact` asks for bit equality (the replaying kernels are of the result's kernel class)."""
    begin, end = segment_bounds(spec, segment)
    last = segment == spec.segments - 1
    start = unit_start if segment == 0 else result.boundaries[segment - 1]
    claimed = result.state if last else result.boundaries[segment]
    state = start.cpu_copy().to(data.val_x.device)
    members = spec.members
    trainer = PopulationTrainer(population, spec.train)
    history = trainer.train(
        state, [m.net_seed for m in members], [m.task for m in members], data, end - begin
    )
    state = state.to("cpu")
    where = f"segment {segment + 1} of {spec.segments} (epochs {begin + 1}-{end})"
    _compare_counters(state, claimed, spec, where)
    _compare_history(history, result.history, begin, spec, where, 0.0 if exact else tolerance.loss_abs)
    if exact:
        for name in ("params", "exp_avg", "exp_avg_sq"):
            if not torch.equal(getattr(state, name), getattr(claimed, name)):
                row = int((getattr(state, name) != getattr(claimed, name)).any(dim=1).nonzero()[0])
                raise ResultRejected(
                    "replay",
                    f"{where}: {members[row].net_id}'s {name} differ from the replay on the same kernels",
                )
        return
    moved = (state.params - start.params).norm(dim=1)
    off = (state.params - claimed.params).norm(dim=1)
    ratio = off / moved.clamp_min(1e-12)
    worst = int(ratio.argmax())
    if float(ratio[worst]) > tolerance.relative and float(off[worst]) > 1e-6:
        raise ResultRejected(
            "replay",
            f"{where}: {members[worst].net_id}'s weights are {float(ratio[worst]):.3g} of the segment's "
            f"update away from the replay (tolerance {tolerance.relative})",
        )


def _compare_counters(
    replayed: PopulationState, claimed: PopulationState, spec: WorkUnitSpec, where: str
) -> None:
    for name in ("step", "epoch", "stopped", "converged"):
        if not torch.equal(getattr(replayed, name), getattr(claimed, name)):
            row = int((getattr(replayed, name) != getattr(claimed, name)).nonzero()[0])
            raise ResultRejected(
                "replay",
                f"{where}: {spec.members[row].net_id}'s {name} is {int(getattr(claimed, name)[row])}, "
                f"the replay's {int(getattr(replayed, name)[row])}",
            )


def _compare_history(
    replayed: EpochHistory, claimed: EpochHistory, begin: int, spec: WorkUnitSpec, where: str, tol: float
) -> None:
    for m, member in enumerate(spec.members):
        ran = int(replayed.n_epochs[m])
        said = int(np.clip(int(claimed.n_epochs[m]) - begin, 0, None))
        if min(said, replayed.train_loss.shape[1]) != ran:
            raise ResultRejected(
                "replay", f"{where}: {member.net_id} claims {said} epochs here, the replay ran {ran}"
            )
        for name in ("train_loss", "val_loss", "val_accuracy"):
            mine = getattr(replayed, name)[m, :ran]
            theirs = getattr(claimed, name)[m, begin : begin + ran]
            if not np.all(np.abs(mine - theirs) <= tol):
                raise ResultRejected(
                    "replay", f"{where}: {member.net_id}'s {name} history differs from the replay"
                )
