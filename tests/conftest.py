"""Shared fixtures: a tiny preset file that trains in seconds through the whole pipeline, one
PyTorch thread for modules that train tiny populations, and Triton's CPU interpreter for the tests of
Triton kernels.

Triton's interpreter reads TRITON_INTERPRET when the kernels are defined (at import), so the
interpreted checks run in a child interpreter (the test file run as a script) that prints its
measurements as JSON; the tests assert on them. The parent process never launches a kernel and so
never depends on that variable."""

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
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


@pytest.fixture(scope="session")
def run_interpreted() -> Callable[[str], dict]:
    def run(script: str) -> dict:
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        src = str(Path(importlib.util.find_spec("mlc").origin).parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        proc = subprocess.run(
            [sys.executable, "-W", "error", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run
