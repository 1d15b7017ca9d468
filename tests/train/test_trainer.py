"""Population trainer: agreement with the reference loop, resume equivalence, stop rule (spec §7)."""

import os
import signal
import threading
import time
from collections import Counter
from unittest.mock import patch

import numpy as np
import pytest
import torch

from mlc import models, tasks, work
from mlc.errors import ConfigError
from mlc.train import (
    PopulationState,
    PopulationTrainer,
    TrainConfig,
    TrainingArrays,
    adam_step,
    evaluate,
    train_reference,
)
from mlc.work import decode_state, encode_state

TASKS = ["SingleDirectMachine", "ParityMachine", "EightBitModified"]


@pytest.fixture(params=["manual", "native"])
def population(request) -> models.Population:
    """Each agreement test runs on the PyTorch recurrence and on the C kernels the CPU path picks."""
    if request.param == "manual":
        return models.population("mlds-gru")
    if not models.native_available():
        pytest.skip(f"C kernels unavailable here: {models.native_unavailable_reason()}")
    return work.population_for("mlds-gru", torch.device("cpu"))


@pytest.fixture(scope="module")
def arrays() -> TrainingArrays:
    data = tasks.make_shared_data(
        tasks.DataSpec(seed=5, n_train=80, n_val=24, length=16), map(tasks.get, TASKS)
    )
    return TrainingArrays.from_shared(data, TASKS)


def fresh(seeds: list[int]) -> PopulationState:
    return PopulationState.fresh(models.population("mlds-gru").init(seeds))


# (7, 0): the warm-up spans all but 2 of the 9 steps; (7, 4): and the lr halves every 4 steps
@pytest.mark.parametrize(("warmup_steps", "half_life"), [(0, 0), (7, 0), (7, 4)])
def test_population_agrees_with_one_network_reference_loop(arrays, population, warmup_steps, half_life):
    # Measured on this CPU: max |weight difference| after 3 epochs of 3 networks is about 3e-8
    # (the only difference is the order of float operations); we allow 1e-5.
    config = TrainConfig(max_epochs=100, warmup_steps=warmup_steps, lr_half_life_steps=half_life)
    seeds = [10, 11, 12]
    state = fresh(seeds)
    history = PopulationTrainer(population, config).train(state, seeds, TASKS, arrays, 3)
    for m, (seed, task) in enumerate(zip(seeds, TASKS, strict=True)):
        module = models.get("mlds-gru", seed=seed)
        ref_history = train_reference(module, seed, task, arrays, config, 3)
        assert (models.flatten(module) - state.params[m]).abs().max() < 1e-5
        np.testing.assert_allclose(history.val_loss[m], ref_history[:, 1], rtol=1e-5)
        np.testing.assert_allclose(history.train_loss[m], ref_history[:, 0], rtol=1e-5)
        # the same bits judged right (through the fused head on the C kernels)
        np.testing.assert_allclose(history.val_accuracy[m], ref_history[:, 2], rtol=0, atol=1e-6)


def test_evaluation_does_not_depend_on_its_chunk_size(arrays, population):
    params = models.population("mlds-gru").init([4, 5, 6, 7])
    rows = torch.tensor([2, 0, 2, 1])  # each network's task: out of order, one twice
    whole = evaluate(population, params, arrays.val_x, arrays.val_y, rows, chunk=arrays.val_x.shape[0])
    chunked = evaluate(population, params, arrays.val_x, arrays.val_y, rows, chunk=5)  # 24 = 4 x 5 + 4
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    # the targets of each network's own task: as if each had its own row
    own = evaluate(population, params, arrays.val_x, arrays.val_y[rows], torch.arange(4), chunk=5)
    for a, b in zip(own, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_k_plus_k_through_serialised_state_equals_2k(arrays, population):
    config = TrainConfig(max_epochs=100)
    seeds = [1, 2, 3]
    trainer = PopulationTrainer(population, config)
    straight = fresh(seeds)
    trainer.train(straight, seeds, TASKS, arrays, 4)
    first = fresh(seeds)
    trainer.train(first, seeds, TASKS, arrays, 2)
    resumed = decode_state(encode_state(first, "wu-1"), "wu-1")
    trainer.train(resumed, seeds, TASKS, arrays, 2)
    for name, tensor in straight.tensors().items():
        assert torch.equal(tensor, resumed.tensors()[name]), name


def test_population_composition_does_not_change_a_network(arrays, population):
    config = TrainConfig(max_epochs=100)
    trainer = PopulationTrainer(population, config)
    alone = fresh([7])
    trainer.train(alone, [7], ["ParityMachine"], arrays, 2)
    crowd = fresh([5, 7, 9])
    trainer.train(crowd, [5, 7, 9], TASKS, arrays, 2)
    assert torch.equal(alone.params[0], crowd.params[1])


def test_training_threads_split_the_networks_and_change_no_result(arrays, population):
    """Each thread trains a range of the active networks on its own copies (`Population.threads`),
    where PyTorch runs one intra-op thread; with more, ranges would multiply them, so none."""
    config = TrainConfig(max_epochs=100)
    seeds = [3, 1, 4, 1, 5, 9]
    tasks_of = [TASKS[i % 3] for i in range(6)]
    trainer = PopulationTrainer(population, config)
    states, histories, calls = [], [], []
    original = population.loss_and_grad

    def recorded(params, x, y):
        calls.append((threading.get_ident(), params.shape[0]))
        return original(params, x, y)

    torch_threads = torch.get_num_threads()
    try:
        for threads, intra_op in ((1, 1), (3, 1), (3, 2)):
            population.threads = threads
            torch.set_num_threads(intra_op)
            state = fresh(seeds)
            state.stopped[2] = True  # the active rows are not contiguous
            calls.clear()
            with patch.object(population, "loss_and_grad", recorded):
                histories.append(trainer.train(state, seeds, tasks_of, arrays, 2))
            states.append(state)
            sizes = Counter(m for _, m in calls)  # 2 epochs of 3 steps (80 sequences, batches of 32)
            on_caller = {ident == threading.get_ident() for ident, _ in calls}
            if (threads, intra_op) == (3, 1):  # the 5 active networks in ranges of 1, 2 and 2, on the pool
                assert sizes == {1: 6, 2: 12} and on_caller == {False}
            else:
                assert sizes == {5: 6} and on_caller == {True}
    finally:
        torch.set_num_threads(torch_threads)
    for other in states[1:]:
        for name, tensor in states[0].tensors().items():
            assert torch.equal(tensor, other.tensors()[name]), name
    assert not torch.equal(states[0].params[0], fresh(seeds).params[0])  # it trained
    assert torch.equal(states[0].params[2], fresh(seeds).params[2])  # and left the stopped one be
    for other in histories[1:]:
        for field in ("train_loss", "val_loss", "val_accuracy", "n_epochs"):
            np.testing.assert_array_equal(getattr(histories[0], field), getattr(other, field))


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler for the test, whatever the runner's: a test suite started in the
    background by a shell inherits SIGINT ignored, and then Ctrl-C raises nothing."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.mark.usefixtures("one_torch_thread", "python_sigint_handler")
@pytest.mark.parametrize("how", ["a range fails", "the caller is interrupted"])
def test_ranges_stop_at_their_next_step_when_one_fails_or_the_caller_is_interrupted(arrays, how):
    population = models.population("mlds-gru", threads=3)
    trainer = PopulationTrainer(population, TrainConfig(max_epochs=100, batch_size=8))  # 10 steps
    seeds = [1, 2, 3, 4, 5]
    state = fresh(seeds)
    before = {name: t.clone() for name, t in state.tensors().items()}
    steps_of_the_others, ended, interrupted = [], threading.Semaphore(0), threading.Event()

    def step(params, x, y):
        if params.shape[0] == 1:  # the first range, at its first step
            if how == "a range fails":
                raise MemoryError("out of memory in one range")
            if not interrupted.is_set():
                interrupted.set()
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, as the calling thread waits
        steps_of_the_others.append(params.shape[0])
        time.sleep(0.2)  # a step long enough that a loaded machine still delivers the stop within one
        return torch.zeros(params.shape[0]), torch.zeros_like(params)

    def counted(piece):  # the caller may return before the ranges end: count them out
        def run():
            try:
                return piece()
            finally:
                ended.release()

        return run

    def run_counted(pieces):
        return models.run_parallel([counted(p) for p in pieces])

    expected = (MemoryError, "out of memory") if how == "a range fails" else (KeyboardInterrupt, None)
    with (
        patch.object(population, "loss_and_grad", step),
        patch("mlc.train._trainer.run_parallel", run_counted),
    ):
        with pytest.raises(expected[0], match=expected[1]):
            trainer.train(state, seeds, TASKS[:1] * 5, arrays, 1)
        for _ in range(3):
            assert ended.acquire(timeout=30)
    assert len(steps_of_the_others) <= 6  # a step or two of each range's 10
    for name, tensor in state.tensors().items():  # nothing half-trained was written back
        assert torch.equal(tensor, before[name]), name


def test_stop_rule_freezes_converged_and_budget_exhausted_networks(arrays):
    # an unreachable loss threshold with a reachable accuracy of 0 makes "converged" depend on loss only
    seeds = [1, 2]
    state = fresh(seeds)
    easy = TrainConfig(max_epochs=100, stop_val_loss=10.0, stop_val_accuracy=0.0)
    history = PopulationTrainer(models.population("mlds-gru"), easy).train(state, seeds, TASKS[:2], arrays, 3)
    assert state.converged.all() and state.stopped.all()
    assert history.n_epochs.tolist() == [1, 1] and np.isnan(history.val_loss[:, 1:]).all()
    frozen = state.params.clone()
    PopulationTrainer(models.population("mlds-gru"), easy).train(state, seeds, TASKS[:2], arrays, 2)
    assert torch.equal(frozen, state.params)

    capped = fresh(seeds)
    budget = TrainConfig(max_epochs=2)
    history = PopulationTrainer(models.population("mlds-gru"), budget).train(
        capped, seeds, TASKS[:2], arrays, 5
    )
    assert history.n_epochs.tolist() == [2, 2]
    assert capped.stopped.all() and not capped.converged.any()
    assert capped.epoch.tolist() == [2, 2] and capped.step.tolist() == [6, 6]  # 80 / 32 -> 3 batches


@pytest.mark.parametrize(
    "values, match",
    [
        ({"lr": 0}, "lr"),
        ({"batch_size": 2.5}, "whole"),
        ({"momentum": 0.9}, "unknown"),
        ({"lr": "x"}, "number"),
        ({"warmup_steps": -1}, "warmup_steps must be at least 0"),
        ({"warmup_steps": 10.5}, "whole"),
        ({"lr_half_life_steps": -5}, "lr_half_life_steps must be at least 0"),
    ],
)
def test_train_config_rejects_bad_values(values, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict(values)


def test_warmup_scales_each_network_s_step_by_its_own_step_count():
    """Step t of a network moves it lr * t / warmup_steps as far as without warm-up (Adam's moments
    are the same), counted per network: networks merged from different work units are at different
    steps. A config without warm-up records none, so what was stored before it existed reads back."""
    torch.manual_seed(0)
    params, grad = torch.randn(3, 5), torch.randn(3, 5)
    step = torch.tensor([0, 1, 9])  # each network's steps so far: t = 1, 2, 10 now
    moved = {}
    for warmup in (0, 4):
        p = params.clone()
        config = TrainConfig(warmup_steps=warmup)
        adam_step(p, grad, torch.zeros(3, 5), torch.zeros(3, 5), step.clone(), config)
        moved[warmup] = p - params
    torch.testing.assert_close(moved[4], moved[0] * torch.tensor([[0.25], [0.5], [1.0]]))
    assert "warmup_steps" not in TrainConfig().to_dict()
    assert TrainConfig.from_dict(TrainConfig(warmup_steps=4).to_dict()).warmup_steps == 4


def test_lr_half_life_decays_each_network_s_step_by_its_own_step_count():
    """Step t moves a network lr * 0.5 ** (t / half_life) as far as a constant rate would, on top of
    the warm-up's factor, counted per network; recorded only where used, like the warm-up."""
    torch.manual_seed(0)
    params, grad = torch.randn(3, 5), torch.randn(3, 5)
    step = torch.tensor([0, 1, 9])  # t = 1, 2, 10 now
    moved = {}
    for warmup, half_life in ((0, 0), (4, 0), (4, 2)):
        p = params.clone()
        config = TrainConfig(warmup_steps=warmup, lr_half_life_steps=half_life)
        adam_step(p, grad, torch.zeros(3, 5), torch.zeros(3, 5), step.clone(), config)
        moved[warmup, half_life] = p - params
    decay = torch.tensor([[0.5**0.5], [0.5], [0.5**5]])
    torch.testing.assert_close(moved[4, 2], moved[4, 0] * decay)
    torch.testing.assert_close(moved[4, 2], moved[0, 0] * torch.tensor([[0.25], [0.5], [1.0]]) * decay)
    assert "lr_half_life_steps" not in TrainConfig().to_dict()
    assert TrainConfig.from_dict(TrainConfig(lr_half_life_steps=8).to_dict()).lr_half_life_steps == 8
