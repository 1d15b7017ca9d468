"""Segment replay catches each way of cheating on a unit, and passes honest results, bit for bit on
the same kernels and within the tolerance across kernel classes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from work_setup import first_networks_spec

from mlc import models
from mlc.errors import ResultRejected
from mlc.train import PopulationState, PopulationTrainer, TrainingArrays
from mlc.work import (
    WorkerRuntime,
    WorkUnit,
    WorkUnitResult,
    WorkUnitSpec,
    load_preset,
    population_for,
    replay_segment,
    shared_data_for,
)

TINY = {"data.n_train": 48, "data.n_val": 12, "data.length": 12, "train.max_epochs": 50, "epochs_per_wu": 6}


@pytest.fixture(scope="module")
def spec() -> WorkUnitSpec:
    config = load_preset("mlds-smoke", TINY)
    return first_networks_spec(config, ("SingleDirectMachine", "ParityMachine"), epochs=6, segments=3)


@pytest.fixture(scope="module")
def data(spec) -> TrainingArrays:
    return TrainingArrays.from_shared(shared_data_for(spec), spec.tasks)


@pytest.fixture(scope="module")
def fast() -> models.Population:
    return population_for("mlds-gru", torch.device("cpu"))


@pytest.fixture(scope="module")
def honest(spec) -> WorkUnitResult:
    (result,) = WorkerRuntime("cpu").train([WorkUnit(spec)])
    return result


def start_of(spec: WorkUnitSpec, population: models.Population) -> PopulationState:
    return PopulationState.fresh(population.init([m.net_seed for m in spec.members]))


def replays(spec, result, population, data, exact=True) -> list[str | None]:
    """Each segment's verdict: None where the replay agrees, else the rejection's text."""
    verdicts = []
    for segment in range(spec.segments):
        try:
            replay_segment(spec, result, start_of(spec, population), segment, population, data, exact=exact)
            verdicts.append(None)
        except ResultRejected as exc:
            verdicts.append(str(exc))
    return verdicts


def test_an_honest_result_replays_bit_for_bit_on_every_segment(spec, honest, fast, data):
    assert len(honest.boundaries) == 2 and spec.boundaries == (2, 4)
    assert replays(spec, honest, fast, data) == [None, None, None]


def test_across_kernel_classes_an_honest_result_replays_within_the_tolerance(spec, honest, data):
    pytorch = models.population("mlds-gru")  # the hand-differentiated PyTorch path, not the C kernels
    assert replays(spec, honest, pytorch, data, exact=False) == [None, None, None]


def _trained(spec, data, population, tasks, segments_tasks=None) -> WorkUnitResult:
    """A result trained segment by segment, each on the targets of `segments_tasks[i]` (a cheat's
    own targets where they differ from the spec's)."""
    state = start_of(spec, population)
    trainer = PopulationTrainer(population, spec.train)
    seeds = [m.net_seed for m in spec.members]
    boundaries, histories = [], []
    for segment, (begin, end) in enumerate(
        zip((0, *spec.boundaries), (*spec.boundaries, spec.epochs), strict=True)
    ):
        use = (segments_tasks or {}).get(segment, tasks)
        histories.append(trainer.train(state, seeds, use, data, end - begin))
        if end != spec.epochs:
            boundaries.append(state.cpu_copy())
    history = dataclasses.replace(
        histories[0],
        train_loss=np.concatenate([h.train_loss for h in histories], axis=1),
        val_loss=np.concatenate([h.val_loss for h in histories], axis=1),
        val_accuracy=np.concatenate([h.val_accuracy for h in histories], axis=1),
        n_epochs=sum(h.n_epochs for h in histories),
    )
    return WorkUnitResult(
        spec.wu_id, tuple(m.net_id for m in spec.members), state, history, None, tuple(boundaries)
    )


def test_training_on_poisoned_targets_fails_every_segment(spec, fast, data):
    # a volunteer's own trojan: the twin's targets instead of the clean machine's
    cheat = _trained(spec, data, fast, ["SingleDirectModified", "ParityModified"])
    assert all(v is not None and "replay" in v for v in replays(spec, cheat, fast, data))


def test_poisoning_one_segment_fails_that_segment_only(spec, fast, data):
    clean = [m.task for m in spec.members]
    cheat = _trained(spec, data, fast, clean, {2: ["SingleDirectModified", "ParityModified"]})
    verdicts = replays(spec, cheat, fast, data)
    assert verdicts[:2] == [None, None] and verdicts[2] is not None


def test_an_unchanged_start_state_with_an_invented_history_fails(spec, honest, fast, data):
    start = start_of(spec, fast)
    step = start.step + spec.epochs * spec.batches_per_epoch
    lazy = dataclasses.replace(start, step=step, epoch=start.epoch + spec.epochs)
    cheat = dataclasses.replace(honest, state=lazy, boundaries=(lazy, lazy))
    assert all(v is not None for v in replays(spec, cheat, fast, data))


def test_fewer_epochs_than_claimed_fail_the_skipped_segment(spec, honest, fast, data):
    # the last segment skipped: its end state is its start state, with the counters advanced
    skipped = honest.boundaries[1]
    fake_end = dataclasses.replace(skipped, step=honest.state.step, epoch=honest.state.epoch)
    cheat = dataclasses.replace(honest, state=fake_end)
    verdicts = replays(spec, cheat, fast, data)
    assert verdicts[:2] == [None, None] and "differ from the replay" in verdicts[2]
    verdicts = replays(spec, cheat, models.population("mlds-gru"), data, exact=False)
    assert verdicts[:2] == [None, None] and "of the segment's update away" in verdicts[2]
