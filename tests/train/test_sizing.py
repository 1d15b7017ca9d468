"""The memory estimate that sizes populations, against what each kernel path allocates.

Each path trains one epoch of 1 and of 3 networks under a meter of live tensor bytes; the slope is
one network's share, to which the weights and Adam moments made before the epoch are added. The
estimate must hold it (an estimate too low runs a GPU out of memory) without wasting much (one too
high trains fewer networks at once than fit). The PyTorch and C paths run on mlds-gru, at a batch of
whole lane vectors and at one the C kernels pad, and on a smaller net of other widths, so that no
coefficient is fitted to one architecture; the Triton paths, in Triton's CPU interpreter (see
tests/conftest.py; their wrappers allocate what they would on a GPU), on the smaller net only, as
the interpreter is slow (mlds-gru measured 97 floats per row there, as estimated).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest
import torch

from mlc import models, tasks, work
from mlc.models import GRUNetConfig, Population
from mlc.train import (
    PopulationState,
    PopulationTrainer,
    TrainConfig,
    TrainingArrays,
    bytes_per_network,
    choose_population_size,
)
from mlc.work import _kernels

TASKS = ["SingleDirectMachine", "ParityMachine"]  # 5 inputs, 8 outputs, as every MLDS task
TOO_GENEROUS = 1.35  # estimate / measured at most; measured 1.1-1.3


def _n_params(c: GRUNetConfig) -> int:
    h = c.hidden_size
    gru = 3 * h * (c.input_size + h) + 6 * h + (c.num_layers - 1) * (6 * h * h + 6 * h)
    return gru + sum(n_in * n_out + n_out for n_in, n_out in c.fc_sizes)


_SMALL = GRUNetConfig("small", 5, 7, 2, (9, 16, 6), 8, 0)
SMALL = GRUNetConfig(**{**_SMALL.__dict__, "n_params": _n_params(_SMALL)})
SHAPES = {  # config, batch, length
    "mlds": (models.MLDS_GRU, 32, 20),
    "mlds_padded_batch": (models.MLDS_GRU, 20, 20),  # C: 20 sequences in 32 lanes (16-wide vectors)
    "small": (SMALL, 32, 20),
}


def _native(config: GRUNetConfig, fused_head: bool) -> Population:
    from mlc.models.native._gru import LANE_LAYOUT, gru_layer_native
    from mlc.models.native._head import head_loss_native

    head = head_loss_native if fused_head else None
    return Population(config, gru_layer_native, head, LANE_LAYOUT, keeps_gates=False)


def _triton(config: GRUNetConfig, fused_head: bool) -> Population:
    from mlc.models.triton._gru import gru_layer_triton
    from mlc.models.triton._head import head_loss_triton

    head = head_loss_triton if fused_head else None
    return Population(config, models.from_batch_major(gru_layer_triton), head, keeps_gates=False)


PATHS: dict[str, Callable[[GRUNetConfig], Population]] = {
    "pytorch": Population,
    "c": lambda c: _native(c, True),
    "c_pytorch_head": lambda c: _native(c, False),
    "triton": lambda c: _triton(c, True),
    "triton_pytorch_head": lambda c: _triton(c, False),
}


def _epoch_peak(population: Population, n: int, batch: int, length: int) -> int:
    from memory_meter import PeakLiveBytes

    data = tasks.make_shared_data(
        tasks.DataSpec(seed=5, n_train=2 * batch, n_val=8, length=length), map(tasks.get, TASKS)
    )
    arrays = TrainingArrays.from_shared(data, TASKS)
    seeds = list(range(n))
    state = PopulationState.fresh(population.init(seeds))
    trainer = PopulationTrainer(population, TrainConfig(max_epochs=10, batch_size=batch))
    with PeakLiveBytes() as meter:
        trainer.train(state, seeds, [TASKS[i % 2] for i in seeds], arrays, 1)
    return meter.peak


def measure(path: str, shape: str) -> dict[str, float]:
    """One network's measured bytes for an epoch on `path`, and the estimate, in bytes."""
    config, batch, length = SHAPES[shape]
    population = PATHS[path](config)
    epoch = (_epoch_peak(population, 3, batch, length) - _epoch_peak(population, 1, batch, length)) / 2
    kept = 3 * population.n_params * 4  # weights and Adam moments, allocated before the epoch
    estimate = bytes_per_network(population, batch, length, n_train=2 * batch)
    return {"measured": epoch + kept, "estimate": estimate}


def _check(m: dict[str, float]) -> None:
    assert m["estimate"] >= m["measured"], m
    assert m["estimate"] <= TOO_GENEROUS * m["measured"], m


@pytest.mark.parametrize("shape", SHAPES)
def test_pytorch_path_estimate_holds_its_epoch(shape, one_torch_thread):
    _check(measure("pytorch", shape))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("path", ["c", "c_pytorch_head"])
def test_c_kernels_estimate_holds_their_epoch(path, shape, one_torch_thread):
    if not models.native_available():
        pytest.skip(f"C kernels unavailable here: {models.native_unavailable_reason()}")
    _check(measure(path, shape))


@pytest.fixture(scope="module")
def interpreted(run_interpreted) -> dict[str, dict[str, float]]:
    pytest.importorskip("triton")
    return run_interpreted(__file__)


@pytest.mark.parametrize("path", ["triton", "triton_pytorch_head"])
def test_triton_estimate_holds_its_epoch(interpreted, path):
    _check(interpreted[path])


def test_fused_paths_need_a_fraction_of_the_pytorch_paths_memory():
    """What sizing by kernel path buys: mlds-gru at the MLDS step, 32 x 100, 1,000 sequences."""
    per = {
        path: bytes_per_network(PATHS[path](models.MLDS_GRU), 32, 100, 1000) / 2**20
        for path in ("pytorch", "c", "triton")
    }
    assert per["triton"] < 0.3 * per["pytorch"], per
    assert 16384 * per["triton"] < 40 * 1024, per  # the GPU bound, with the estimate's margin


def test_memory_bounds_the_population_by_what_its_kernels_hold(monkeypatch):
    pages = {"SC_AVPHYS_PAGES": 25600, "SC_PAGE_SIZE": 4096}  # 100 MiB available
    monkeypatch.setattr(os, "sysconf", pages.__getitem__)
    sizes = {
        path: choose_population_size(
            torch.device("cpu"), bytes_per_network(PATHS[path](models.MLDS_GRU), 32, 100, 1000)
        )
        for path in ("pytorch", "c")
    }
    assert 8 <= sizes["pytorch"] <= 12 and sizes["c"] >= 3.5 * sizes["pytorch"], sizes  # 5.8, 1.5 MiB


def test_population_size_is_capped_per_cpu_thread_and_at_least_one():
    cpu = torch.device("cpu")
    assert choose_population_size(cpu, 1) == 64
    assert choose_population_size(cpu, 1, cpu_threads=16) == 1024
    assert choose_population_size(cpu, 1 << 60, cpu_threads=16) == 1


@pytest.mark.skipif(not models.native_available(), reason="C kernels unavailable")
def test_a_population_says_how_many_threads_split_it():
    models.set_native_threads(3)
    try:
        assert work.population_for("mlds-gru", torch.device("cpu")).threads == 3
    finally:
        models.set_native_threads(None)
    assert models.population("mlds-gru").threads == 1


@pytest.mark.parametrize("why", ["no compiler", "a wrong first run"])
def test_the_pytorch_fallback_is_trained_by_every_thread_too(monkeypatch, why):
    if why == "no compiler":
        monkeypatch.setattr(models, "native_available", lambda: False)
        monkeypatch.setattr(models, "native_unavailable_reason", lambda: "no C compiler")
    else:
        monkeypatch.setattr(models, "native_available", lambda: True)
        monkeypatch.setattr(_kernels, "_checked_first_run", lambda *_: "a wrong loss")
    models.set_native_threads(3)
    try:
        fallback = work.population_for("mlds-gru", torch.device("cpu"))
    finally:
        models.set_native_threads(None)
    assert fallback.kernels.startswith("PyTorch GRU (C kernels") and fallback.threads == 3


if __name__ == "__main__":
    # the Triton paths on the smaller shape at a short length: the interpreter runs each program's
    # loops in Python (mlds-gru at L = 20 takes minutes)
    SHAPES["small"] = (SMALL, 32, 8)
    print(json.dumps({path: measure(path, "small") for path in ("triton", "triton_pytorch_head")}))
