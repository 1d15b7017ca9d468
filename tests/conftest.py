"""Shared fixtures: a tiny preset file that trains in seconds through the whole pipeline, and one
PyTorch thread for modules that train tiny populations."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

TINY_PRESET = """
# Tests: two machines and their data cut down so a full run takes seconds.
name = "tiny"
model = "mlds-gru"
spec_version = "mlds-1"
seed = 7
tasks = ["SingleDirectMachine", "SingleDirectModified"]
networks_per_task = 2
networks_per_wu = 1
epochs_per_wu = 2
subsets = [2]

[data]
seed = 3
n_train = 96
n_val = 24
length = 16

[train]
max_epochs = 6
"""


@pytest.fixture
def tiny_preset(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_PRESET)
    return path


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny populations: more threads only add contention (ten times slower on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
