"""Shared fixtures of the analysis tests: synthetic datasets with a planted signal."""

from __future__ import annotations

import pytest
from analysis_fakes import FakeDataset, synthetic_dataset

# Two DS1 machines and their DS2 twins (SingleDirect's trained on both device kinds), plus a machine
# without its twin and a pair too small to classify: every kind of row the report must show. Tasks
# that are classified hold 24 networks each, so no class is swamped by a bigger one.
DS1_COUNTS = {("SingleDirectMachine", "cpu"): 12, ("SingleDirectMachine", "cuda"): 12,
              ("ParityMachine", "cpu"): 24, ("EightBitMachine", "cpu"): 24,
              ("SimpleXORMachine", "cpu"): 6}
DS2_COUNTS = {("SingleDirectModified", "cpu"): 12, ("SingleDirectModified", "cuda"): 12,
              ("ParityModified", "cpu"): 24, ("SimpleXORModified", "cpu"): 6}


@pytest.fixture(scope="session")
def ds1() -> FakeDataset:
    return synthetic_dataset(DS1_COUNTS, name="ds1", signal=4.0, device_signal=4.0, seed=1)


@pytest.fixture(scope="session")
def ds2() -> FakeDataset:
    return synthetic_dataset(DS2_COUNTS, name="ds2", signal=4.0, device_signal=4.0, seed=2)
