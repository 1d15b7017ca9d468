"""The pages' arithmetic that needs no database: the loss histogram's bins."""

from __future__ import annotations

import pytest

from mlc.coordinator._stats import loss_histogram, release_name
from mlc.store import default_export_name


def test_the_loss_histogram_puts_each_loss_in_one_bin_the_largest_in_the_last() -> None:
    hist = loss_histogram([0.1, 0.2, 0.2, 0.5], bins=4)
    assert hist.edges == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert hist.counts == [1, 2, 0, 1] and hist.n == 4 and hist.median == pytest.approx(0.2)


def test_equal_losses_make_one_bin_and_none_make_an_empty_histogram() -> None:
    assert loss_histogram([0.3, 0.3]).counts == [2]
    empty = loss_histogram([])
    assert (empty.counts, empty.n, empty.median) == ([], 0, None)


def test_losses_spanning_orders_of_magnitude_are_binned_on_a_log_scale() -> None:
    hist = loss_histogram([1e-5, 1e-4, 1e-3, 0.1], bins=4)
    assert hist.log_scale and hist.counts == [1, 1, 1, 1]
    assert hist.edges == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 0.1])
    assert not loss_histogram([0.1, 0.2, 0.3]).log_scale


def test_a_milestone_is_named_as_the_release_cut_at_it() -> None:
    assert release_name("mlds-ds1", 100) == default_export_name("mlds-ds1", 100) == "MLDS-DS1-100"
