"""The worker runtime: sizing from specs, and checkpoints inside a work unit that resume exactly."""

import dataclasses

import numpy as np
import pytest
import torch
from work_setup import first_networks_spec

from mlc.errors import ConfigError
from mlc.work import TrainingStopped, WorkerRuntime, WorkUnit, WorkUnitSpec, load_preset

TINY = {"data.n_train": 40, "data.n_val": 12, "data.length": 12, "train.max_epochs": 50, "epochs_per_wu": 6}


@pytest.fixture(scope="module")
def spec() -> WorkUnitSpec:
    config = load_preset("mlds-smoke", TINY)
    return first_networks_spec(config, config.tasks[:3], epochs=6)


def test_a_stopped_unit_resumes_from_its_checkpoint_bit_identically(spec, tmp_path):
    (uninterrupted,) = WorkerRuntime("cpu").train([WorkUnit(spec)])
    runtime = WorkerRuntime("cpu", checkpoint_dir=tmp_path / "ck", checkpoint_seconds=0.0)
    epochs_seen: list[int] = []
    with pytest.raises(TrainingStopped, match="after 2 of 6 epochs"):
        runtime.train([WorkUnit(spec)], should_stop=lambda: len(epochs_seen) >= 2,
                      on_epoch=lambda r: epochs_seen.append(r.epochs_done))
    assert len(list((tmp_path / "ck").iterdir())) == 1
    resumed_epochs: list[int] = []
    (resumed,) = WorkerRuntime("cpu", checkpoint_dir=tmp_path / "ck").train(
        [WorkUnit(spec)], on_epoch=lambda r: resumed_epochs.append(r.epochs_done)
    )
    assert resumed_epochs == [3, 4, 5, 6]  # the first two epochs were not trained again
    assert torch.equal(resumed.state.params, uninterrupted.state.params)
    assert torch.equal(resumed.state.exp_avg_sq, uninterrupted.state.exp_avg_sq)
    np.testing.assert_array_equal(resumed.history.val_loss, uninterrupted.history.val_loss)
    np.testing.assert_array_equal(resumed.history.n_epochs, uninterrupted.history.n_epochs)


def test_forget_drops_the_checkpoint_and_a_damaged_one_is_not_trusted(spec, tmp_path):
    runtime = WorkerRuntime("cpu", checkpoint_dir=tmp_path, checkpoint_seconds=0.0)
    with pytest.raises(TrainingStopped):
        runtime.train([WorkUnit(spec)], should_stop=lambda: True)
    (path,) = tmp_path.iterdir()
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a full disk
    epochs: list[int] = []
    (result,) = runtime.train([WorkUnit(spec)], on_epoch=lambda r: epochs.append(r.epochs_done))
    assert epochs == [1, 2, 3, 4, 5, 6]  # from the unit's start
    assert int(result.history.n_epochs.max()) == 6
    assert path.exists()  # a fresh checkpoint, kept until the caller has stored the results
    runtime.forget([WorkUnit(spec)])
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_belongs_to_one_training_call(spec, tmp_path):
    runtime = WorkerRuntime("cpu", checkpoint_dir=tmp_path, checkpoint_seconds=0.0)
    with pytest.raises(TrainingStopped):
        runtime.train([WorkUnit(spec)], should_stop=lambda: True)
    other = dataclasses.replace(spec, wu_id="exp-g000001-p000")
    later = WorkerRuntime("cpu", checkpoint_dir=tmp_path, checkpoint_seconds=1e9)
    (result,) = later.train([WorkUnit(other)])
    assert int(result.history.n_epochs.max()) == 6 and len(list(tmp_path.iterdir())) == 1


def test_sizing_comes_from_the_work_and_a_size_that_cannot_fit_is_refused(spec, monkeypatch):
    assert WorkerRuntime("cpu").capacity(spec) >= 1
    assert WorkerRuntime("cpu", population_size=5).capacity(spec, n_left=3) == 5
    monkeypatch.setattr("mlc.work._runtime.free_memory", lambda device: 2**10)
    with pytest.raises(ConfigError, match="a population of 3 networks needs about"):
        WorkerRuntime("cpu", population_size=5).capacity(spec, n_left=3)
    with pytest.raises(ConfigError, match="threads must be a whole number"):
        WorkerRuntime("cpu", threads=0)


def test_every_epoch_reports_loss_convergence_and_steps_of_the_population(spec):
    reports = []
    (result,) = WorkerRuntime("cpu").train([WorkUnit(spec)], on_epoch=reports.append)
    assert [r.epochs_done for r in reports] == [1, 2, 3, 4, 5, 6]
    last = reports[-1]
    assert (last.epochs, last.n_networks, last.population) == (6, 3, 0)
    final = result.history.val_loss[:, -1]
    assert last.val_loss_median == pytest.approx(float(np.median(final)))
    assert last.val_loss_best == pytest.approx(float(final.min()))
    assert last.n_converged == int(result.state.converged.sum())
    # each network takes one optimiser step per batch: the steps of the six epochs add up to the state's
    assert sum(r.model_steps for r in reports) == int(result.state.step.sum()) > 0
    assert all(r.seconds > 0 for r in reports)
