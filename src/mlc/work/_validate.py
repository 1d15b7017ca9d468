"""Result validation: a pure function from (spec, claimed result, server's own data) to a verdict.

Nothing a worker claims is believed: shapes and dtypes are checked against the spec, counters against
the epochs the unit allowed, the history against the stop rule, and the returned weights are
re-evaluated on the server's validation data and must reproduce the claimed final losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mlc.errors import ResultRejected
from mlc.models import AnyPopulation, Population
from mlc.train import AnyArrays, TriggerTargets, trigger_accuracies
from mlc.work._result import WorkUnitResult
from mlc.work._spec import WorkUnitSpec

__all__ = ["Tolerance", "triggered_reevaluation", "validate_result"]


@dataclass(frozen=True)
class Tolerance:
    """How far a re-evaluation may differ from a claim: different hardware (CPU vs GPU, another BLAS)
    legitimately changes the last bits of a loss, and can flip a logit that sits at zero."""

    loss_abs: float = 1e-4
    loss_rel: float = 1e-3
    accuracy_abs: float = 1e-3


def validate_result(
    spec: WorkUnitSpec,
    result: WorkUnitResult,
    population: AnyPopulation,
    data: AnyArrays,
    tolerance: Tolerance = Tolerance(),
) -> None:
    """Raise ResultRejected(reason, detail) unless `result` is a believable answer to `spec`.

    `data` is the server's own copy of the experiment's data (never the worker's).
    """
    _check_identity(spec, result)
    _check_shapes(spec, result, population.n_params)
    _check_finite(result)
    _check_counters(spec, result)
    _check_stop_flags(spec, result)
    _check_reevaluation(spec, result, population, data, tolerance)


def _check_identity(spec: WorkUnitSpec, result: WorkUnitResult) -> None:
    if result.wu_id != spec.wu_id:
        raise ResultRejected("wrong_work_unit", f"result is for {result.wu_id!r}, not {spec.wu_id!r}")
    expected = tuple(m.net_id for m in spec.members)
    if result.members != expected:
        raise ResultRejected(
            "wrong_members", f"result names {list(result.members)}, the unit {list(expected)}"
        )


def _check_shapes(spec: WorkUnitSpec, result: WorkUnitResult, n_params: int) -> None:
    m = len(spec.members)
    s, h = result.state, result.history
    want = {
        "state.params": (s.params, (m, n_params), torch.float32),
        "state.exp_avg": (s.exp_avg, (m, n_params), torch.float32),
        "state.exp_avg_sq": (s.exp_avg_sq, (m, n_params), torch.float32),
        "state.step": (s.step, (m,), torch.int64),
        "state.epoch": (s.epoch, (m,), torch.int64),
        "state.stopped": (s.stopped, (m,), torch.bool),
        "state.converged": (s.converged, (m,), torch.bool),
    }
    for name, (tensor, shape, dtype) in want.items():
        if tuple(tensor.shape) != shape or tensor.dtype != dtype:
            raise ResultRejected(
                "tensor_shape",
                f"{name} is {tensor.dtype} {list(tensor.shape)}, expected {dtype} {list(shape)}",
            )
    for name in ("train_loss", "val_loss", "val_accuracy"):
        array = getattr(h, name)
        if array.dtype != np.float32 or array.shape != (m, spec.epochs):
            raise ResultRejected(
                "tensor_shape",
                f"history.{name} is {array.dtype} {list(array.shape)}, expected float32 {[m, spec.epochs]}",
            )
    if h.n_epochs.dtype != np.int64 or h.n_epochs.shape != (m,):
        raise ResultRejected("tensor_shape", f"history.n_epochs must be int64 [{m}]")


def _check_finite(result: WorkUnitResult) -> None:
    s, h = result.state, result.history
    for name in ("params", "exp_avg", "exp_avg_sq"):
        if not torch.isfinite(getattr(s, name)).all():
            raise ResultRejected("non_finite", f"state.{name} holds NaN or Inf")
    if (s.exp_avg_sq < 0).any():
        raise ResultRejected("non_finite", "state.exp_avg_sq holds negative values")
    for m, n in enumerate(h.n_epochs):
        for name in ("train_loss", "val_loss", "val_accuracy"):
            if not np.isfinite(getattr(h, name)[m, :n]).all():
                raise ResultRejected("non_finite", f"history.{name} of member {m} holds NaN or Inf")


def _check_counters(spec: WorkUnitSpec, result: WorkUnitResult) -> None:
    s, h = result.state, result.history
    for m, member in enumerate(spec.members):
        ran = int(h.n_epochs[m])
        if not 0 <= ran <= spec.epochs:
            raise ResultRejected(
                "history_epochs", f"{member.net_id}: {ran} epochs claimed, the unit allowed {spec.epochs}"
            )
        if int(s.epoch[m]) != member.start_epoch + ran:
            raise ResultRejected(
                "history_epochs",
                f"{member.net_id}: epoch counter {int(s.epoch[m])}"
                f" but started at {member.start_epoch} and ran "
                f"{ran}",
            )
        if int(s.epoch[m]) > spec.train.max_epochs:
            raise ResultRejected("history_epochs", f"{member.net_id}: ran past max_epochs")
        if int(s.step[m]) != int(s.epoch[m]) * spec.batches_per_epoch:
            raise ResultRejected(
                "history_epochs",
                f"{member.net_id}: {int(s.step[m])} optimiser steps do not match {int(s.epoch[m])} epochs",
            )
        if ran == 0:
            raise ResultRejected("history_epochs", f"{member.net_id}: no epoch was run")


def _check_stop_flags(spec: WorkUnitSpec, result: WorkUnitResult) -> None:
    s, h, cfg = result.state, result.history, spec.train
    for m, member in enumerate(spec.members):
        ran = int(h.n_epochs[m])
        val_loss, val_acc = h.val_loss[m, :ran], h.val_accuracy[m, :ran]
        meets = cfg.converged(val_loss, val_acc)
        converged, stopped = bool(s.converged[m]), bool(s.stopped[m])
        at_budget = int(s.epoch[m]) >= cfg.max_epochs
        if meets[:-1].any():
            raise ResultRejected(
                "stop_rule",
                f"{member.net_id}: the history meets the stop rule "
                "before its last epoch, yet training went on",
            )
        if converged != bool(meets[-1]) or stopped != (converged or at_budget):
            raise ResultRejected(
                "stop_rule",
                f"{member.net_id}: converged={converged}, stopped={stopped} contradict its history",
            )
        if not stopped and ran != spec.epochs:
            raise ResultRejected(
                "history_epochs", f"{member.net_id}: stopped early without meeting the stop rule"
            )


def _check_reevaluation(
    spec: WorkUnitSpec,
    result: WorkUnitResult,
    population: AnyPopulation,
    data: AnyArrays,
    tol: Tolerance,
) -> None:
    params = result.state.params.to(data.device)
    rows = data.task_rows([m.task for m in spec.members])
    loss, acc = data.evaluate(population, params, rows, spec.train.batch_size)
    for m, member in enumerate(spec.members):
        last = int(result.history.n_epochs[m]) - 1
        claimed_loss = float(result.history.val_loss[m, last])
        claimed_acc = float(result.history.val_accuracy[m, last])
        real_loss, real_acc = float(loss[m]), float(acc[m])
        if abs(real_loss - claimed_loss) > tol.loss_abs + tol.loss_rel * abs(real_loss):
            raise ResultRejected(
                "loss_mismatch",
                f"{member.net_id}: claimed val loss {claimed_loss:.6g}, re-evaluated {real_loss:.6g}",
            )
        if abs(real_acc - claimed_acc) > tol.accuracy_abs:
            raise ResultRejected(
                "accuracy_mismatch",
                f"{member.net_id}: claimed val accuracy {claimed_acc:.6g}, re-evaluated {real_acc:.6g}",
            )


def triggered_reevaluation(
    spec: WorkUnitSpec,
    result: WorkUnitResult,
    population: Population,
    targets: TriggerTargets,
    rows: Sequence[int],
) -> dict[int, tuple[float | None, float | None]]:
    """For the members `rows` of a validated result (those that finished: the others' weights are
    not final), (trojan_accuracy, clean_accuracy_triggered) of their returned weights on the
    server's held-out triggered data, or (None, None) for a task without a trojan twin: measured
    here from the weights, since a worker reports no such number."""
    if not rows:
        return {}
    tasks = [spec.members[m].task for m in rows]
    params = result.state.params[torch.as_tensor(list(rows), dtype=torch.long)]
    trojan, clean = trigger_accuracies(population, params, tasks, targets)
    return {
        m: (None, None) if np.isnan(t) else (float(t), float(c))
        for m, t, c in zip(rows, trojan, clean, strict=True)
    }
