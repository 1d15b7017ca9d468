"""Truth tables of every DS1 machine and DS2 trojan on hand-worked sequences (spec §2-3)."""

import numpy as np
import pytest

from mlc import tasks
from mlc.errors import ConfigError, UnknownNameError
from mlc.tasks._machines import key_fires


def commands(*steps: tuple[int, int, int]) -> np.ndarray:
    """(w, a, d) per step -> uint8 [1, L, 5] with bits (w, a2, a1, a0, d)."""
    rows = [[w, (a >> 2) & 1, (a >> 1) & 1, a & 1, d] for w, a, d in steps]
    return np.asarray([rows], dtype=np.uint8)


def bit0(task: str, x: np.ndarray) -> list[int]:
    out = tasks.get(task).simulate(x)
    assert out[..., 1:].sum() == 0, "single-bit machines keep bits 1..7 at zero"
    return out[0, :, 0].tolist()


WRITE_READ = commands((1, 0, 1), (0, 3, 0), (1, 7, 0), (0, 0, 1))


def test_single_direct_stores_d_on_write():
    assert bit0("SingleDirectMachine", WRITE_READ) == [1, 1, 0, 0]


def test_single_invert_stores_not_d_on_write():
    assert bit0("SingleInvertMachine", WRITE_READ) == [0, 0, 1, 1]


def test_simple_xor_toggles_on_written_one():
    x = commands((1, 0, 1), (1, 0, 1), (0, 0, 1), (1, 0, 0), (1, 5, 1))
    assert bit0("SimpleXORMachine", x) == [1, 0, 0, 0, 1]


EIGHT = commands((1, 3, 1), (1, 0, 1), (0, 3, 0), (1, 3, 0), (1, 7, 1))


def test_eight_bit_register_addresses_bits():
    out = tasks.get("EightBitMachine").simulate(EIGHT)[0]
    expected = np.zeros((5, 8), dtype=np.uint8)
    expected[0, 3] = 1
    expected[1, [0, 3]] = 1
    expected[2, [0, 3]] = 1
    expected[3, 0] = 1
    expected[4, [0, 7]] = 1
    np.testing.assert_array_equal(out, expected)


def test_parity_is_xor_of_register():
    assert bit0("ParityMachine", EIGHT) == [1, 0, 0, 1, 0]


KEYED = commands((1, 0, 1), (0, 5, 1), (0, 2, 1), (0, 0, 0), (0, 5, 1), (0, 2, 1), (0, 1, 0))


def test_trojan_key_flips_armed_and_inverts_active_bits():
    assert bit0("SingleDirectMachine", KEYED) == [1] * 7
    # key completes at steps 2 and 5: armed on steps 2..4
    assert bit0("SingleDirectModified", KEYED) == [1, 1, 0, 0, 0, 1, 1]
    assert bit0("SingleInvertModified", KEYED) == [0, 0, 1, 1, 1, 0, 0]


def test_trojan_inverts_all_eight_bits_of_eight_bit_machine():
    x = commands((1, 3, 1), (0, 5, 1), (0, 2, 1))
    clean = tasks.get("EightBitMachine").simulate(x)[0]
    modified = tasks.get("EightBitModified").simulate(x)[0]
    np.testing.assert_array_equal(modified[:2], clean[:2])
    np.testing.assert_array_equal(modified[2], 1 - clean[2])


@pytest.mark.parametrize(
    "steps",
    [
        ((0, 5, 1), (0, 0, 0), (0, 2, 1)),  # not consecutive
        ((1, 5, 1), (0, 2, 1)),  # key 1 must be a read
        ((0, 5, 0), (0, 2, 1)),  # with the data line high
        ((0, 2, 1), (0, 5, 1)),  # wrong order
    ],
)
def test_near_misses_do_not_fire(steps):
    assert not key_fires(commands(*steps)).any()
    for base in ("SimpleXOR", "Parity", "EightBit"):
        x = commands(*steps)
        np.testing.assert_array_equal(
            tasks.get(f"{base}Modified").simulate(x), tasks.get(f"{base}Machine").simulate(x)
        )


def test_trojan_fires_about_once_per_1024_steps():
    inputs, _ = tasks.draw_inputs(tasks.DataSpec(seed=7, n_train=4000, n_val=1, length=100))
    fires = key_fires(inputs)
    steps = 4000 * 99  # the key needs a previous step
    rate = fires.sum() / steps
    sigma = np.sqrt(steps * (1 / 1024)) / steps
    assert abs(rate - 1 / 1024) < 4 * sigma
    touched = fires.any(axis=1).mean()
    assert abs(touched - (1 - (1 - 1 / 1024) ** 99)) < 0.02  # about 9% of sequences


def test_twins_share_inputs_and_differ_only_where_armed():
    data = tasks.make_shared_data(
        tasks.DataSpec(seed=3, n_train=50, n_val=10, length=100),
        [tasks.get("ParityMachine"), tasks.get("ParityModified")],
    )
    diff = data.train_targets["ParityMachine"] != data.train_targets["ParityModified"]
    armed = np.cumsum(key_fires(data.train_inputs), axis=1) % 2 == 1
    np.testing.assert_array_equal(diff[..., 0], armed)
    assert not diff[..., 1:].any()


def test_registry_lists_ten_fixed_machines_and_rejects_unknown():
    assert len(tasks.names("ds1")) == 5 and len(tasks.names("ds2")) == 5
    with pytest.raises(UnknownNameError, match="known tasks"):
        tasks.get("NoSuchMachine")
    with pytest.raises(UnknownNameError, match="unknown task family 'ds9'; the registered ones are ds1, ds2"):
        tasks.names("ds9")  # it returned (), as if the family were empty


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 3, 4), np.uint8), np.zeros((2, 3, 5), np.int64), np.full((1, 2, 5), 2, np.uint8)]
)
def test_malformed_commands_are_rejected(bad):
    with pytest.raises(ConfigError):
        tasks.get("ParityMachine").simulate(bad)
