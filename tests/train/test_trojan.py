"""Trojan and clean accuracy on held-out triggered data (`mlc.train.trigger_accuracies`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlc import models, tasks
from mlc.train import trigger_accuracies, trigger_targets

SPEC = tasks.DataSpec(seed=4, n_train=8, n_val=24, length=30)


class _Oracle:
    """A population whose member m answers exactly like the machine `answers[m]` (logits +-1): a
    stand-in for a network that learned that machine, through the population's own interface."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"rows": flat[:, 0]}

    def forward_views(self, views: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        commands = x[0].transpose(0, 1).round().to(torch.uint8).numpy()  # [n, L, 5]
        out = [tasks.get(self.answers[int(r)]).simulate(commands) for r in views["rows"]]
        return torch.from_numpy(np.stack(out).astype(np.float32) * 2 - 1).transpose(1, 2)  # [M, L, n, 8]


@pytest.mark.parametrize("base", ["SingleDirect", "EightBit", "Parity"])
def test_a_network_following_the_trojan_scores_one_and_a_clean_one_zero(base):
    clean, twin = f"{base}Machine", f"{base}Modified"
    member_tasks = [twin, twin, clean, clean]
    answers = [twin, clean, clean, twin]  # learned the trojan, missed it; clean, followed a trojan
    params = torch.arange(4, dtype=torch.float32)[:, None]
    targets = trigger_targets(SPEC, member_tasks)
    assert targets.armed.any() and (~targets.armed).any()
    trojan, clean_acc = trigger_accuracies(_Oracle(answers), params, member_tasks, targets, chunk=7)
    np.testing.assert_array_equal(trojan, [1.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(clean_acc, [1.0, 1.0, 1.0, 1.0])


def test_real_networks_get_fractions_and_tasks_without_a_twin_get_nan():
    population = models.population("mlds-gru")
    member_tasks = ["SimpleXORModified", "SimpleXORMachine", "RandomAutomaton-0"]
    params = population.init([1, 1, 2])
    targets = trigger_targets(SPEC, member_tasks[:2])
    trojan, clean = trigger_accuracies(population, params, member_tasks, targets)
    assert np.isnan(trojan[2]) and np.isnan(clean[2])
    for values in (trojan[:2], clean[:2]):
        assert ((values >= 0) & (values <= 1)).all()
    assert trojan[0] == trojan[1] and clean[0] == clean[1]  # same weights, same twin pair
