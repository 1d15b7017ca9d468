"""The mlds-gru network: parameter count, layout, init and forward equivalence (spec §6)."""

import numpy as np
import pytest
import torch

from mlc import models
from mlc.errors import UnknownNameError

SPEC_ORDER = [
    *(
        f"gru.{kind}_l{layer}"
        for layer in range(4)
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ),
    *(f"fc{i}.{p}" for i in range(1, 5) for p in ("weight", "bias")),
]


def test_parameter_count_is_4364():
    module = models.get("mlds-gru", seed=0)
    gru = sum(p.numel() for n, p in module.named_parameters() if n.startswith("gru."))
    assert gru == 3492
    assert sum(p.numel() for p in module.parameters()) == 4364


def test_layout_follows_state_dict_order_contiguously():
    layout = models.layout("mlds-gru")
    assert [e.name for e in layout.entries] == SPEC_ORDER
    assert layout.entry("gru.weight_ih_l0").shape == (36, 5)
    assert layout.entry("fc4.weight").shape == (8, 12)
    offset = 0
    for e in layout.entries:
        assert e.offset == offset
        offset += e.size
    assert layout.n_params == offset == 4364
    assert layout.layout_id.startswith("mlds-gru/")


def test_flatten_unflatten_round_trip():
    a, b = models.get("mlds-gru", seed=1), models.get("mlds-gru", seed=2)
    models.unflatten_into(b, models.flatten(a))
    assert torch.equal(models.flatten(a), models.flatten(b))
    with pytest.raises(ValueError, match="values"):
        models.unflatten_into(b, np.zeros(4363, np.float32))
    with pytest.raises(ValueError, match=r"is loaded, not one of shape \[1, 4364\]"):
        models.unflatten_into(b, np.zeros((1, 4364), np.float32))  # a Dataset.weights row block


def test_the_layout_names_each_tensor_of_one_network_or_many():
    module = models.get("mlds-gru", seed=3)
    layout, flat = models.layout("mlds-gru"), models.flatten(module).numpy()
    one = layout.tensors(flat)
    assert list(one) == SPEC_ORDER
    for name, tensor in module.state_dict().items():
        np.testing.assert_array_equal(one[name], tensor.numpy())
    many = layout.tensors(np.stack([flat, 2 * flat]))
    assert many["fc4.weight"].shape == (2, 8, 12)
    np.testing.assert_array_equal(many["fc4.weight"][1], 2 * one["fc4.weight"])
    with pytest.raises(ValueError, match=r"takes \[4364\] or \[n, 4364\]"):
        layout.tensors(flat[:-1])


def test_seeded_init_is_pytorch_default_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    torch.rand(1)
    state = torch.random.get_rng_state()
    a = models.get("mlds-gru", seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(5)
    expected = models.GRUNet(models.MLDS_GRU)
    assert torch.equal(models.flatten(a), models.flatten(expected))
    assert not torch.equal(models.flatten(a), models.flatten(models.get("mlds-gru", seed=6)))
    assert before.numel() == 1


def test_population_members_start_from_reference_weights():
    seeds = [3, 99, 2**40]
    flat = models.population("mlds-gru").init(seeds)
    assert flat.shape == (3, 4364) and flat.dtype == torch.float32
    for row, seed in zip(flat, seeds, strict=True):
        assert torch.equal(row, models.flatten(models.get("mlds-gru", seed=seed)))


def test_population_forward_matches_reference_within_1e_5():
    pop = models.population("mlds-gru")
    seeds = [0, 1, 2, 3]
    flat = pop.init(seeds)
    flat += 0.3 * torch.randn_like(flat)  # away from init, so every layer matters
    x = torch.randint(0, 2, (4, 6, 30, 5)).float()
    out = pop.forward(flat, x)
    assert out.shape == (4, 6, 30, 8)
    for m in range(4):
        ref = models.unflatten_into(models.get("mlds-gru"), flat[m])
        with torch.no_grad():
            assert (ref(x[m]) - out[m]).abs().max() < 1e-5


def test_unknown_model_names_the_known_ones():
    with pytest.raises(UnknownNameError, match="mlds-gru"):
        models.get("resnet")
