"""Does a network follow the trojan? Its accuracy on held-out triggered data (spec mlds-2).

For a DS1 machine or its DS2 twin, the triggered data (`tasks.triggered_eval_inputs`) has the key
planted once per sequence. A step is *armed* when the twin's hidden bit is set after it. A network
follows the trojan on an armed step when all 8 of its output bits (logit > 0) equal the twin's, and
the clean machine on an unarmed step when they equal the clean machine's (the two agree there). A
trojaned network should score near 1 on both; a clean one near 0 on the first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mlc import tasks
from mlc.models import Population
from mlc.tasks._machines import TrojanMachine, key_fires

__all__ = ["TriggerTargets", "trigger_accuracies", "trigger_targets"]


class TriggerTargets:
    """Triggered inputs with, per task that has a trojan twin, the twin's and the clean machine's
    outputs and the armed mask; tasks without one (DS3) are absent."""

    def __init__(self, spec: tasks.DataSpec, task_names: Sequence[str]) -> None:
        self.inputs = tasks.triggered_eval_inputs(spec)  # [N, L, 5] uint8
        fires = key_fires(self.inputs)
        self.armed = (np.cumsum(fires, axis=1) % 2).astype(bool)  # [N, L]
        self.trojan: dict[str, np.ndarray] = {}
        self.clean: dict[str, np.ndarray] = {}
        for name in task_names:
            twin = _twin(name)
            if twin is not None:
                self.trojan[name] = twin.simulate(self.inputs)
                self.clean[name] = twin.base.simulate(self.inputs)


def trigger_targets(spec: tasks.DataSpec, task_names: Sequence[str]) -> TriggerTargets:
    """The triggered data of `spec` and the targets of `task_names` on it."""
    return TriggerTargets(spec, task_names)


def _twin(name: str) -> TrojanMachine | None:
    """The trojan twin of a DS1 or DS2 task (a DS2 task is its own), None for any other task."""
    try:
        task = tasks.get(name)
    except Exception:  # a random automaton needs parameters: it has no twin either way
        return None
    if isinstance(task, TrojanMachine):
        return task
    if task.family == "ds1":
        twin = tasks.get(name.removesuffix("Machine") + "Modified")
        return twin if isinstance(twin, TrojanMachine) else None
    return None


@torch.no_grad()
def trigger_accuracies(
    population: Population,
    params: torch.Tensor,
    member_tasks: Sequence[str],
    targets: TriggerTargets,
    chunk: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """(trojan_accuracy, clean_accuracy_triggered), float64 [M] each: the fraction of armed steps on
    which network m's outputs all equal the trojan twin's, and of unarmed steps on which they all equal
    the clean machine's; NaN for a member whose task has no twin. `params` [M, P] on the CPU or the
    population's device; `chunk` sequences are evaluated per pass to bound memory."""
    m = params.shape[0]
    trojan_hits = np.zeros(m)
    clean_hits = np.zeros(m)
    has_twin = np.array([t in targets.trojan for t in member_tasks])
    if not has_twin.any():
        return np.full(m, np.nan), np.full(m, np.nan)
    rows = np.flatnonzero(has_twin)
    sub = params[torch.as_tensor(rows, device=params.device)]
    views = population.views(sub)
    x_all = torch.from_numpy(targets.inputs.astype(np.float32)).to(params.device)
    for start in range(0, x_all.shape[0], chunk):
        stop = min(start + chunk, x_all.shape[0])
        xs = x_all[start:stop].transpose(0, 1)  # [L, n, 5]
        inputs = xs.unsqueeze(0).expand(len(rows), *xs.shape).contiguous()
        pred = (population.forward_views(views, inputs) > 0).cpu().numpy()  # [Mt, L, n, 8]
        pred = pred.transpose(0, 2, 1, 3)  # [Mt, n, L, 8]
        armed = targets.armed[start:stop]
        for i, row in enumerate(rows):
            task = member_tasks[row]
            follows_trojan = (pred[i] == targets.trojan[task][start:stop].astype(bool)).all(axis=2)
            follows_clean = (pred[i] == targets.clean[task][start:stop].astype(bool)).all(axis=2)
            trojan_hits[row] += follows_trojan[armed].sum()
            clean_hits[row] += follows_clean[~armed].sum()
    n_armed, n_unarmed = targets.armed.sum(), (~targets.armed).sum()
    trojan = np.where(has_twin, trojan_hits / max(n_armed, 1), np.nan)
    clean = np.where(has_twin, clean_hits / max(n_unarmed, 1), np.nan)
    return trojan, clean
