"""The population trainer: M networks trained at once, each with its own data order and stop rule.

Each epoch gathers the still-active networks into a compact sub-population, so stopped networks are
frozen and cost nothing; the loss is each network's own mean, summed, so gradients do not mix.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from mlc.models import AnyPopulation, Population, model_ranges, run_parallel
from mlc.train._adam import adam_step
from mlc.train._config import TrainConfig
from mlc.train._data import AnyArrays, batch_order
from mlc.train._state import EpochHistory, PopulationState

__all__ = ["EpochReport", "PopulationTrainer", "evaluate"]


@dataclass(frozen=True)
class _EpochPart:
    """A range of networks after an epoch: weights and Adam state to write back, and its metrics."""

    params: torch.Tensor
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    step: torch.Tensor
    train_loss: torch.Tensor
    val_loss: torch.Tensor
    val_accuracy: torch.Tensor


@dataclass(frozen=True)
class EpochReport:
    """Handed to the progress callback after every epoch of a training call."""

    epochs_done: int  # epochs of this call so far
    n_active: int  # networks still training after this epoch
    n_stopped_now: int  # networks that stopped in this epoch


@torch.no_grad()
def evaluate(
    population: Population,
    params: torch.Tensor,
    x: torch.Tensor,
    targets: torch.Tensor,
    target_rows: torch.Tensor,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean BCE loss and bit accuracy (logit > 0) per network, through the fused head where the
    population has one, `chunk` sequences per pass: the training batch size, so that evaluating never
    needs more memory than a training step (which is what the population size was chosen for; a
    200-sequence pass needs ~2.5x a step's memory).
    Each network's targets are gathered a chunk at a time for the same reason: all 200 sequences'
    targets would be 640 KB per network at L = 100, a third of what a training step holds.

    params [M, P]; x [N, L, 5] shared by all; targets [T, N, L, 8] per task; target_rows [M], each
    network's row of `targets` -> (loss [M], accuracy [M]) float32.
    """
    m, n = params.shape[0], x.shape[0]
    views = population.views(params)
    loss_sum = torch.zeros(m, dtype=torch.float64, device=params.device)
    correct = torch.zeros(m, dtype=torch.float64, device=params.device)
    for start in range(0, n, chunk):
        xs = x[start : start + chunk].transpose(0, 1)  # [L, n, 5]
        # [M, L, n, 8]; index_select copies whole rows (3-4x faster than indexing with a tensor)
        ys = targets[:, start : start + chunk].index_select(0, target_rows).transpose(1, 2)
        inputs = xs.unsqueeze(0).expand(m, *xs.shape).contiguous()  # [M, L, n, 5]
        loss, n_correct = population.loss_and_correct_views(views, inputs, ys)
        loss_sum += loss.double() * ys[0].numel()
        correct += n_correct.double()
    count = float(n * targets.shape[2] * targets.shape[3])
    return (loss_sum / count).float(), (correct / count).float()


class PopulationTrainer:
    """Trains the networks of a `PopulationState` under one `TrainConfig` on one device."""

    def __init__(self, population: AnyPopulation, config: TrainConfig) -> None:
        self.population = population
        self.config = config

    def train(
        self,
        state: PopulationState,
        net_seeds: Sequence[int],
        tasks: Sequence[str],
        data: AnyArrays,
        epochs: int,
        on_epoch: Callable[[EpochReport], None] | None = None,
    ) -> EpochHistory:
        """Run up to `epochs` more epochs for every network that has not stopped (in place on `state`).

        `net_seeds` and `tasks` name each row of `state`; the state's tensors must already be on the
        data's device. Returns the per-epoch metrics of this call.
        """
        m = state.n_members
        seeds = np.asarray(net_seeds, dtype=np.int64)
        task_rows = data.task_rows(tasks)
        history = _empty_history(m, epochs)
        for k in range(epochs):
            active = (~state.stopped).nonzero().flatten()
            if active.numel() == 0:
                break
            rows = active.cpu().numpy()
            metrics = self._epoch(state, active, rows, seeds, task_rows, data)
            stopped_now = self._apply_stop_rule(state, active, metrics)
            history.train_loss[rows, k] = metrics[0].cpu().numpy()
            history.val_loss[rows, k] = metrics[1].cpu().numpy()
            history.val_accuracy[rows, k] = metrics[2].cpu().numpy()
            history.n_epochs[rows] += 1
            if on_epoch is not None:
                on_epoch(EpochReport(k + 1, int((~state.stopped).sum()), stopped_now))
        return history

    def _epoch(
        self,
        state: PopulationState,
        active: torch.Tensor,
        rows: np.ndarray,
        seeds: np.ndarray,
        task_rows: torch.Tensor,
        data: AnyArrays,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One epoch for the `active` rows (`rows` on the host), in contiguous ranges of them: on the
        CPU one per training thread (`Population.threads`), each a whole epoch on its own copies, so
        a step's gathers, copies and Adam run in parallel as well as its kernels, and the threads
        meet once an epoch instead of at every kernel call (2 threads, MLDS: 1.07x at 128 networks,
        1.28x at 256). A network's arithmetic is its own, so the split does not change any result.
        A range that fails, or an interrupt here, stops the other ranges at their next step.
        Only where PyTorch runs one intra-op thread (`models.set_training_threads`, as `mlc run`
        sets it): ranges each running PyTorch's threads would start threads x threads of them."""
        on_cpu = state.params.device.type == "cpu"
        parts = self.population.threads if on_cpu and torch.get_num_threads() == 1 else 1
        ranges = model_ranges(len(rows), parts)
        abandon = threading.Event()
        pieces = [
            functools.partial(
                self._epoch_part,
                state,
                active[lo:hi],
                seeds[rows[lo:hi]],
                task_rows[active[lo:hi]],
                data,
                abandon,
            )
            for lo, hi in ranges
        ]
        try:
            # a range returns None only once abandoned, which follows an exception raised here
            done = cast(list[_EpochPart], run_parallel(pieces))
        except BaseException:  # a failed range, or an interrupt of the wait: stop the others
            abandon.set()
            raise
        for part, (lo, hi) in zip(done, ranges, strict=True):
            ids = active[lo:hi]
            state.params[ids], state.step[ids] = part.params, part.step
            state.exp_avg[ids], state.exp_avg_sq[ids] = part.exp_avg, part.exp_avg_sq
        state.epoch[active] += 1
        return (
            torch.cat([part.train_loss for part in done]),
            torch.cat([part.val_loss for part in done]),
            torch.cat([part.val_accuracy for part in done]),
        )

    def _epoch_part(
        self,
        state: PopulationState,
        active: torch.Tensor,
        net_seeds: np.ndarray,
        member_tasks: torch.Tensor,
        data: AnyArrays,
        abandon: threading.Event,
    ) -> _EpochPart | None:
        """One epoch for the `active` rows (their `net_seeds` and target rows `member_tasks`) on
        compact copies of their weights and Adam state (indexing by a tensor copies), which `_epoch`
        writes back: ranges trained at once share no tensor. None, leaving the state as it was, once
        `abandon` is set; sets it when this range fails."""
        try:
            device = state.params.device
            params = state.params[active]
            exp_avg, exp_avg_sq = state.exp_avg[active], state.exp_avg_sq[active]
            step = state.step[active]
            epochs = state.epoch[active].cpu().numpy()
            n = data.n_train
            order = np.stack([batch_order(s, e, n) for s, e in zip(net_seeds, epochs, strict=True)])
            order_t = torch.from_numpy(order).to(device)  # [Ma, N]
            loss_sum = torch.zeros(len(net_seeds), dtype=torch.float64, device=device)
            for start in range(0, n, self.config.batch_size):
                if abandon.is_set():
                    return None
                idx = order_t[:, start : start + self.config.batch_size]  # [Ma, B]
                x, y = data.batch(idx, member_tasks)  # [Ma, L, B, 5], [Ma, L, B, 8]
                loss, grad = self.population.loss_and_grad(params, x, y)
                adam_step(params, grad, exp_avg, exp_avg_sq, step, self.config)
                loss_sum += loss.double() * idx.shape[1]
            val_loss, val_acc = data.evaluate(self.population, params, member_tasks, self.config.batch_size)
        except BaseException:
            abandon.set()
            raise
        return _EpochPart(params, exp_avg, exp_avg_sq, step, (loss_sum / n).float(), val_loss, val_acc)

    def _apply_stop_rule(
        self, state: PopulationState, active: torch.Tensor, metrics: tuple[torch.Tensor, ...]
    ) -> int:
        """Flag converged and out-of-budget networks as stopped; returns how many stopped now."""
        _, val_loss, val_acc = metrics
        converged = self.config.converged(val_loss, val_acc)
        out_of_budget = state.epoch[active] >= self.config.max_epochs
        stop = converged | out_of_budget
        state.converged[active] = converged
        state.stopped[active] = stop
        return int(stop.sum())


def _empty_history(m: int, epochs: int) -> EpochHistory:
    def nan() -> np.ndarray:
        return np.full((m, epochs), np.nan, dtype=np.float32)

    return EpochHistory(
        train_loss=nan(),
        val_loss=nan(),
        val_accuracy=nan(),
        n_epochs=np.zeros(m, dtype=np.int64),
    )
