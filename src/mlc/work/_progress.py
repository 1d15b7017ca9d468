"""What training tells its caller after every epoch: plain numbers about the population, so a display
(the CLI's, the worker's log) can show loss and speed without knowing anything of tensors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mlc.train import EpochHistory, PopulationState

__all__ = ["EpochProgress", "epoch_progress"]


@dataclass(frozen=True)
class EpochProgress:
    """One population after one epoch. `population` numbers the populations of a training call (units
    with other settings or budgets train one after another); the counts are of this population.
    `val_loss_median`/`val_loss_best` are over each network's latest validation loss (NaN before any
    epoch); `model_steps` the optimiser steps all networks took in this epoch, in `seconds`."""

    epochs_done: int  # of the unit's budget, counting epochs before a resume
    epochs: int  # the unit's budget
    n_networks: int
    n_active: int  # still training after this epoch
    n_stopped_now: int
    n_converged: int
    val_loss_median: float
    val_loss_best: float
    model_steps: int
    seconds: float
    population: int = 0


def latest_val_loss(history: EpochHistory) -> np.ndarray:
    """Each member's last recorded validation loss [M] (NaN for one with no epoch yet)."""
    m = history.n_epochs.shape[0]
    last = np.clip(history.n_epochs.astype(np.int64) - 1, 0, None)
    if history.val_loss.shape[1] == 0:
        return np.full(m, np.nan, dtype=np.float32)
    values = history.val_loss[np.arange(m), last]
    return np.where(history.n_epochs > 0, values, np.nan)


def epoch_progress(
    state: PopulationState,
    history: EpochHistory,
    *,
    epochs_done: int,
    epochs: int,
    n_stopped_now: int,
    model_steps: int,
    seconds: float,
    population: int = 0,
) -> EpochProgress:
    """The progress of `state` after an epoch, `history` holding every epoch of the unit so far."""
    losses = latest_val_loss(history)
    finite = losses[np.isfinite(losses)]
    median = float(np.median(finite)) if finite.size else math.nan
    best = float(finite.min()) if finite.size else math.nan
    return EpochProgress(
        epochs_done=epochs_done,
        epochs=epochs,
        n_networks=state.n_members,
        n_active=int((~state.stopped).sum()),
        n_stopped_now=n_stopped_now,
        n_converged=int(state.converged.sum()),
        val_loss_median=median,
        val_loss_best=best,
        model_steps=model_steps,
        seconds=seconds,
        population=population,
    )
