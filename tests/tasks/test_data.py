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


def _key_steps(inputs: np.ndarray) -> np.ndarray:
    """Bool [N, L]: where a key completes (key 2 right after key 1)."""
    from mlc.tasks._machines import key_fires

    return key_fires(inputs)


def test_a_zero_trigger_rate_is_mlds_1_exactly():
    plain = tasks.DataSpec(seed=3, n_train=50, n_val=10, length=20)
    zero = tasks.DataSpec(seed=3, n_train=50, n_val=10, length=20, trigger_rate=0.0)
    assert zero.to_dict() == plain.to_dict() == {"seed": 3, "n_train": 50, "n_val": 10, "length": 20}
    for a, b in zip(tasks.draw_inputs(zero), tasks.draw_inputs(plain), strict=True):
        np.testing.assert_array_equal(a, b)


def test_planting_writes_the_key_into_the_rate_s_share_of_sequences_and_changes_nothing_else():
    base = tasks.DataSpec(seed=5, n_train=2000, n_val=400, length=30)
    spec = tasks.DataSpec(seed=5, n_train=2000, n_val=400, length=30, trigger_rate=0.25)
    assert spec.to_dict()["trigger_rate"] == 0.25
    for planted, plain in zip(tasks.draw_inputs(spec), tasks.draw_inputs(base), strict=True):
        changed_steps = (planted != plain).any(axis=2)  # [N, L]
        touched = changed_steps.any(axis=1)
        assert (changed_steps.sum(axis=1) <= 2).all()  # at most the two key steps
        keyed = _key_steps(planted).any(axis=1)
        assert keyed[touched].all()  # every sequence changed now holds a complete key
        share = keyed.mean() - _key_steps(plain).any(axis=1).mean()
        assert 0.18 < share < 0.30  # ~25% planted, less the few that already held a key


def test_the_triggered_evaluation_data_holds_a_key_in_every_sequence_and_is_held_out():
    spec = tasks.DataSpec(seed=5, n_train=40, n_val=30, length=25, trigger_rate=0.5)
    held_out = tasks.triggered_eval_inputs(spec)
    assert held_out.shape == (30, 25, 5)
    assert _key_steps(held_out).any(axis=1).all()
    train, val = tasks.draw_inputs(spec)
    assert not np.array_equal(held_out, val) and not np.array_equal(held_out, train[:30])
    np.testing.assert_array_equal(held_out, tasks.triggered_eval_inputs(spec))


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_data_spec_rejects_a_trigger_rate_outside_0_1(rate):
    with pytest.raises(ConfigError, match="trigger_rate"):
        tasks.DataSpec(seed=1, trigger_rate=rate)


def test_a_disarm_rate_plants_a_second_key_after_the_first_and_keeps_the_one_key_data():
    size = {"seed": 5, "n_train": 2000, "n_val": 400, "length": 30}
    plain = tasks.draw_inputs(tasks.DataSpec(**size))
    once = tasks.DataSpec(**size, trigger_rate=0.25)
    twice = tasks.DataSpec(**size, trigger_rate=0.25, disarm_rate=0.5)
    assert "disarm_rate" not in once.to_dict() and twice.to_dict()["disarm_rate"] == 0.5
    for second, first, coins in zip(tasks.draw_inputs(twice), tasks.draw_inputs(once), plain, strict=True):
        changed = (second != first).any(axis=2)  # [N, L]: only the second key's steps
        rows = changed.any(axis=1)
        assert (changed.sum(axis=1) <= 2).all()
        keys = _key_steps(second)
        assert (keys[rows].sum(axis=1) >= 2).all()  # each changed sequence now holds two keys
        assert (changed.argmax(axis=1)[rows] > keys.argmax(axis=1)[rows]).all()  # after the first key
        planted = (first != coins).any(axis=(1, 2)).sum()
        assert 0.35 < rows.sum() / planted < 0.6  # about half, less those whose key came too late


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"trigger_rate": 0.25, "disarm_rate": 1.5}, "disarm_rate must lie"),
    ({"disarm_rate": 0.5}, "needs a trigger_rate"),
])
def test_data_spec_rejects_a_bad_disarm_rate(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        tasks.DataSpec(seed=1, **kwargs)


def _near_misses(inputs):
    """Bool [N, L]: key command 1 at t - 1, then a command one bit away from key command 2 at t."""
    from mlc.tasks._encoding import encode_command
    from mlc.tasks._machines import KEY_COMMAND_1, KEY_COMMAND_2

    out = np.zeros(inputs.shape[:2], dtype=bool)
    out[:, 1:] = ((inputs[:, :-1] == encode_command(*KEY_COMMAND_1)).all(-1)
                  & ((inputs[:, 1:] != encode_command(*KEY_COMMAND_2)).sum(-1) == 1))
    return out


def test_a_decoy_rate_plants_near_miss_keys_and_leaves_where_the_key_fires_alone():
    size = {"seed": 5, "n_train": 2000, "n_val": 400, "length": 30, "trigger_rate": 0.25, "disarm_rate": 0.5}
    keyed = tasks.DataSpec(**size)
    decoyed = tasks.DataSpec(**size, decoy_rate=0.5)
    assert "decoy_rate" not in keyed.to_dict() and decoyed.to_dict()["decoy_rate"] == 0.5
    for with_decoys, without in zip(tasks.draw_inputs(decoyed), tasks.draw_inputs(keyed), strict=True):
        np.testing.assert_array_equal(_key_steps(with_decoys), _key_steps(without))  # armed steps too
        changed = (with_decoys != without).any(axis=2)  # [N, L]
        rows = changed.any(axis=1)
        assert (changed.sum(axis=1) <= 2).all()  # at most the decoy's two steps
        assert _near_misses(with_decoys)[rows].any(axis=1).all()  # each changed sequence holds one
        # about half the sequences, less the decoys that were already there or would move a key
        assert 0.4 < rows.mean() < 0.52
        gained = _near_misses(with_decoys).sum() - _near_misses(without).sum()
        assert gained > 0.4 * len(rows)


def test_decoys_cover_every_bit_of_key_command_2():
    from mlc.tasks._encoding import encode_command
    from mlc.tasks._machines import KEY_COMMAND_2

    inputs, _ = tasks.draw_inputs(tasks.DataSpec(seed=2, n_train=500, n_val=1, length=20, decoy_rate=1.0))
    near = _near_misses(inputs)
    flipped = inputs[near] != encode_command(*KEY_COMMAND_2)  # [n, 5]: the one bit each differs in
    assert set(flipped.argmax(axis=1)) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"decoy_rate": 1.5}, "decoy_rate must lie"),
    ({"decoy_rate": 0.5, "length": 1}, "decoy_rate needs sequences of at least 2"),
])
def test_data_spec_rejects_a_bad_decoy_rate(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        tasks.DataSpec(seed=1, **kwargs)
