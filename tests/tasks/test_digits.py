"""DS4 data: scikit-learn's digits split by the data seed, BadNets poisoning as its settings say."""

import numpy as np
import pytest

from mlc.errors import ConfigError
from mlc.tasks import DataSpec, get, shared_data_for_tasks, stamp


def test_badnets_poisons_a_rate_of_other_classes_and_keeps_the_clean_task_clean():
    params = {"DigitsBadNets": {"rate": 0.2, "target": 3, "patch": 3}}
    spec = DataSpec(seed=5, n_train=500, n_val=100)
    data = shared_data_for_tasks(spec, ["DigitsClean", "DigitsBadNets"], params)
    clean, bad = data.train_targets["DigitsClean"], data.train_targets["DigitsBadNets"]
    poisoned = bad[:, 1] > 0
    assert poisoned.sum() == 100 and (bad[poisoned, 1] == 3).all() and (bad[poisoned, 0] == 3).all()
    assert (clean[poisoned, 0] != 3).all()  # drawn from the other classes
    assert (bad[~poisoned, 0] == clean[~poisoned, 0]).all() and not clean[:, 1].any()
    assert (data.val_targets["DigitsBadNets"][:, 1:] == [3, 3]).all()


def test_the_trigger_is_a_bottom_right_square_at_full_intensity():
    images = stamp(np.zeros((2, 8, 8), dtype=np.uint8), np.array([2, 0]))
    assert images[0].sum() == 4 * 16 and (images[0, 6:, 6:] == 16).all() and not images[1].any()


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [("DigitsClean", {"rate": 0.1}, "takes the parameters"), ("DigitsBadNets", {"rate": 2}, "rate"),
     ("DigitsBadNets", {"target": 10}, "target"), ("DigitsBadNets", {"patch": 1.5}, "whole number")],
)
def test_bad_task_parameters_are_refused_by_name(name, params, message):
    with pytest.raises(ConfigError, match=message):
        get(name, **params)


def test_more_images_than_the_digits_hold_are_refused():
    with pytest.raises(ConfigError, match="1797"):
        shared_data_for_tasks(DataSpec(seed=1, n_train=1500, n_val=400), ["DigitsClean"], {})
    with pytest.raises(ConfigError, match="mix"):
        shared_data_for_tasks(DataSpec(seed=1), ["DigitsClean", "ParityMachine"], {})
