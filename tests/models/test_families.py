"""The classifier families: layouts, settings, and the torch.func population against the
one-network reference loop (nn.Module + torch.optim.Adam, one network at a time)."""

import pytest
import torch
import torch.nn.functional as F

from mlc import models
from mlc.errors import ConfigError
from mlc.models import flatten, unflatten_into
from mlc.train import TrainConfig, adam_step

FAMILIES = ["digits-mlp", "digits-cnn", "digits-transformer"]


@pytest.mark.parametrize("name", FAMILIES)
def test_layout_is_the_reference_state_dict(name):
    module = models.get(name, seed=3)
    layout = models.layout(name)
    assert [e.name for e in layout.entries] == list(module.state_dict())
    assert layout.n_params == sum(p.numel() for p in module.parameters())
    assert layout.layout_id.startswith(f"{name}/")
    again = unflatten_into(models.get(name, seed=4), flatten(module))
    assert torch.equal(flatten(again), flatten(module))


def test_settings_change_the_layout_only_where_they_change_the_shape():
    base = models.layout("digits-mlp")
    assert models.layout("digits-mlp", {"activation": "tanh", "init": "xavier"}) == base
    wide = models.layout("digits-mlp", {"width": 48, "depth": 3})
    assert wide.n_params == 64 * 48 + 48 + 2 * (48 * 48 + 48) + 48 * 10 + 10
    assert wide.layout_id != base.layout_id
    xavier = flatten(models.get("digits-mlp", 1, {"init": "xavier"}))
    assert not torch.equal(xavier, flatten(models.get("digits-mlp", 1)))


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"activation": "swish"}, "activation"), ({"width": 2.5}, "whole number"), ({"colour": 1}, "unknown")],
)
def test_bad_settings_are_refused_by_name(settings, message):
    with pytest.raises(ConfigError, match=message):
        models.config("digits-cnn", settings)
    with pytest.raises(ConfigError, match="fixed architecture"):
        models.config("mlds-gru", {"width": 3})


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("settings", [{}, {"activation": "tanh", "width": 8}])
def test_population_trains_exactly_as_the_reference_loop(name, settings):
    torch.manual_seed(0)
    seeds, steps, batch = [11, 12, 13], 3, 5
    population = models.population(name, settings=settings)
    config = TrainConfig(lr=1e-2)
    x = torch.rand(steps, len(seeds), batch, 1, 8, 8)
    y = torch.randint(0, 10, (steps, len(seeds), batch))

    params = population.init(seeds)
    exp_avg, exp_avg_sq = torch.zeros_like(params), torch.zeros_like(params)
    step = torch.zeros(len(seeds), dtype=torch.int64)
    losses = []
    for k in range(steps):
        loss, grad = population.loss_and_grad(params, x[k], y[k])
        adam_step(params, grad, exp_avg, exp_avg_sq, step, config)
        losses.append(loss)

    for m, seed in enumerate(seeds):
        module = models.get(name, seed, settings)
        opt = torch.optim.Adam(module.parameters(), lr=config.lr)
        for k in range(steps):
            ref_loss = F.cross_entropy(module(x[k, m]), y[k, m])
            opt.zero_grad()
            ref_loss.backward()
            opt.step()
            torch.testing.assert_close(losses[k][m], ref_loss.detach(), rtol=1e-5, atol=1e-6)
        # where a gradient is zero but for rounding (the attention's key bias: softmax ignores a
        # constant shift), Adam scales that noise to full steps; such weights are not compared
        real = exp_avg_sq[m] > 1e-12
        torch.testing.assert_close(params[m][real], flatten(module)[real], rtol=1e-4, atol=1e-5)
        assert real.float().mean() > 0.5
    loss_sum, correct = population.loss_and_correct(params, x[0], y[0])
    logits = population.forward(params, x[0])
    per_image = F.cross_entropy(logits.transpose(1, 2), y[0], reduction="none")  # [M, B]
    torch.testing.assert_close(loss_sum, per_image.sum(1))
    assert torch.equal(correct, (logits.argmax(-1) == y[0]).sum(1).float())
