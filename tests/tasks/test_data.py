"""Shared data generation: deterministic, shared by all tasks, hashed (spec §5)."""

import numpy as np
import pytest

from mlc import tasks
from mlc.errors import ConfigError


def test_inputs_are_fair_coins_from_pcg64_and_deterministic():
    spec = tasks.DataSpec(seed=11, n_train=300, n_val=50, length=40)
    train, val = tasks.draw_inputs(spec)
    assert train.shape == (300, 40, 5) and val.shape == (50, 40, 5) and train.dtype == np.uint8
    rng = np.random.Generator(np.random.PCG64(11))
    np.testing.assert_array_equal(train, rng.integers(0, 2, size=(300, 40, 5), dtype=np.uint8))
    assert abs(train.mean() - 0.5) < 0.01
    again, _ = tasks.draw_inputs(spec)
    np.testing.assert_array_equal(train, again)


def test_hashes_name_every_array_and_change_with_the_seed():
    names = ["SingleDirectMachine", "SingleDirectModified"]
    a = tasks.make_shared_data(tasks.DataSpec(seed=1, n_train=8, n_val=4, length=6), map(tasks.get, names))
    b = tasks.make_shared_data(tasks.DataSpec(seed=2, n_train=8, n_val=4, length=6), map(tasks.get, names))
    assert set(a.hashes()) == {"train/inputs", "val/inputs"} | {
        f"{s}/targets/{n}" for s in ("train", "val") for n in names
    }
    assert a.hashes()["train/inputs"] == tasks.array_sha256(a.train_inputs)
    assert a.digest() != b.digest()


@pytest.mark.parametrize("field", ["n_train", "n_val", "length"])
def test_data_spec_rejects_empty_sizes(field):
    with pytest.raises(ConfigError, match=field):
        tasks.DataSpec(seed=1, **{field: 0})
