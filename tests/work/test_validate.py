"""Result validation: an honest result passes; each kind of bad result is rejected with its reason."""

import dataclasses

import numpy as np
import pytest
import torch
from work_setup import first_networks_spec

from mlc import models
from mlc.errors import ConfigError, ResultRejected
from mlc.train import TrainingArrays
from mlc.work import (
    WorkUnit,
    WorkUnitResult,
    WorkUnitSpec,
    load_preset,
    run_work_units,
    shared_data_for,
    validate_result,
)

TINY = {"data.n_train": 40, "data.n_val": 12, "data.length": 12, "train.max_epochs": 50, "epochs_per_wu": 2}


@pytest.fixture(scope="module")
def spec() -> WorkUnitSpec:
    config = load_preset("mlds-smoke", TINY)
    return first_networks_spec(config, config.tasks[:3], epochs=2)


@pytest.fixture(scope="module")
def honest(spec) -> bytes:
    (result,) = run_work_units([WorkUnit(spec)], torch.device("cpu"))
    return result.to_bytes()


@pytest.fixture(scope="module")
def server(spec) -> tuple[models.Population, TrainingArrays]:
    return models.population(spec.model), TrainingArrays.from_shared(shared_data_for(spec), spec.tasks)


def check(spec, result, server) -> None:
    validate_result(spec, result, *server)


def fresh(honest) -> WorkUnitResult:
    return WorkUnitResult.from_bytes(honest)


def test_honest_result_passes_and_round_trips(spec, honest, server):
    result = fresh(honest)
    check(spec, result, server)
    assert result.to_bytes() == honest
    assert result.history.n_epochs.tolist() == [2, 2, 2]
    assert result.state.epoch.tolist() == [2, 2, 2]


def rejects(reason, spec, result, server):
    with pytest.raises(ResultRejected) as info:
        check(spec, result, server)
    assert info.value.reason == reason, str(info.value)


def test_result_for_another_work_unit(spec, honest, server):
    result = fresh(honest)
    rejects("wrong_work_unit", dataclasses.replace(spec, wu_id="other-g1-p000"), result, server)


def test_result_naming_other_members(spec, honest, server):
    result = fresh(honest)
    result.members = result.members[::-1]
    rejects("wrong_members", spec, result, server)


def test_wrong_tensor_shape(spec, honest, server):
    result = fresh(honest)
    result.state.params = result.state.params[:, :-1].clone()
    rejects("tensor_shape", spec, result, server)


def test_wrong_tensor_dtype(spec, honest, server):
    result = fresh(honest)
    result.state.params = result.state.params.double()
    rejects("tensor_shape", spec, result, server)


def test_wrong_tensor_names_in_the_bytes(honest):
    import safetensors.torch

    from mlc.work._tensorfile import unpack

    tensors, doc = unpack(honest, "mlc.result")
    tensors["state.extra"] = torch.zeros(1)
    del tensors["state.exp_avg"]
    import json

    blob = safetensors.torch.save(tensors, metadata={"mlc.result": json.dumps(doc)})
    with pytest.raises(ResultRejected, match="tensor_names"):
        WorkUnitResult.from_bytes(blob)


@pytest.mark.parametrize("blob", [b"", b"\x00" * 7, b"\xff" * 64, b"not safetensors at all, truly"])
def test_garbage_bytes(blob):
    with pytest.raises(ResultRejected, match="malformed"):
        WorkUnitResult.from_bytes(blob)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights(spec, honest, server, value):
    result = fresh(honest)
    result.state.params[1, 17] = value
    rejects("non_finite", spec, result, server)


def test_claimed_loss_that_the_weights_do_not_give(spec, honest, server):
    result = fresh(honest)
    result.history.val_loss[0, 1] *= 0.5
    rejects("loss_mismatch", spec, result, server)


def test_weights_swapped_for_others(spec, honest, server):
    result = fresh(honest)
    result.state.params[0] = models.population(spec.model).init([12345])[0]
    rejects("loss_mismatch", spec, result, server)


def test_claimed_accuracy_that_the_weights_do_not_give(spec, honest, server):
    result = fresh(honest)
    result.history.val_accuracy[2, 1] = min(1.0, result.history.val_accuracy[2, 1] + 0.01)
    rejects("accuracy_mismatch", spec, result, server)


def test_history_longer_than_the_epochs_run(spec, honest, server):
    result = fresh(honest)
    result.history.n_epochs[1] = 1  # claims one epoch, the counter says two
    rejects("history_epochs", spec, result, server)


def test_epoch_counter_past_the_budget(spec, honest, server):
    result = fresh(honest)
    result.state.epoch[0] += 1
    rejects("history_epochs", spec, result, server)


def test_optimiser_steps_inconsistent_with_epochs(spec, honest, server):
    result = fresh(honest)
    result.state.step[0] -= 1
    rejects("history_epochs", spec, result, server)


def test_converged_claim_that_the_history_does_not_support(spec, honest, server):
    result = fresh(honest)
    result.state.converged[0] = True
    result.state.stopped[0] = True
    rejects("stop_rule", spec, result, server)


def test_stopping_early_without_reason(spec, honest, server):
    result = fresh(honest)
    result.state.stopped[1] = True
    rejects("stop_rule", spec, result, server)


def test_spec_json_round_trip_and_malformed_specs(spec):
    assert WorkUnitSpec.from_json(spec.to_json()) == spec
    for broken in ("{}", "[1]", spec.to_json().replace('"epochs": 2', '"epochs": -1'), "not json"):
        with pytest.raises(ConfigError):
            WorkUnitSpec.from_json(broken)


def test_redrawn_data_must_match_the_digest(spec):
    with pytest.raises(ConfigError, match="digest"):
        shared_data_for(dataclasses.replace(spec, data_digest="0" * 64))


def test_history_is_nan_padded_after_a_member_stops(spec):
    easy = dataclasses.replace(
        spec, train=dataclasses.replace(spec.train, stop_val_loss=10.0, stop_val_accuracy=0.0)
    )
    (result,) = run_work_units([WorkUnit(easy)], torch.device("cpu"))
    assert result.state.converged.all()
    assert np.isnan(result.history.val_loss[:, 1]).all()
    check(
        easy,
        result,
        (models.population(easy.model), TrainingArrays.from_shared(shared_data_for(easy), easy.tasks)),
    )
