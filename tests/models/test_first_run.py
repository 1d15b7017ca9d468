"""The first-run check before fused kernels train: it passes working kernels, and a kernel that fails
to launch or computes wrongly makes the population fall back and say why. The Triton wiring runs in
Triton's CPU interpreter in a child process (this file as a script; see conftest.py)."""

from __future__ import annotations

import json
from unittest import mock

import pytest
import torch

from mlc import models, work
from mlc.work._first_run import first_run_failure


def _with_layer(layer) -> models.Population:
    return models.population("mlds-gru", layer)


def test_passes_the_pytorch_path_and_the_cpu_kernels():
    reference = models.population("mlds-gru")
    cpu = torch.device("cpu")
    assert first_run_failure(reference, reference, cpu) is None
    assert first_run_failure(work.population_for("mlds-gru", cpu), reference, cpu) is None


def test_a_caller_without_gradients_does_not_fail_the_check():
    reference = models.population("mlds-gru")
    with torch.no_grad():
        assert first_run_failure(reference, reference, torch.device("cpu")) is None


CHECK = "mlc.work._kernels.first_run_failure"


@pytest.fixture
def no_checks_yet():
    from mlc.work._kernels import _FIRST_RUNS

    _FIRST_RUNS.clear()
    yield
    _FIRST_RUNS.clear()


@pytest.mark.usefixtures("no_checks_yet")
def test_checks_once_per_process():
    from mlc.work._kernels import _checked_first_run

    cpu, candidate = torch.device("cpu"), models.population("mlds-gru", kernels="some kernels")
    with mock.patch(CHECK, return_value="RuntimeError: no ptxas") as check:
        assert _checked_first_run("mlds-gru", cpu, candidate) == "RuntimeError: no ptxas"
        assert _checked_first_run("mlds-gru", cpu, candidate) == "RuntimeError: no ptxas"
    assert check.call_count == 1


@pytest.mark.usefixtures("no_checks_yet")
def test_running_out_of_memory_is_not_remembered():
    from mlc.work._kernels import _checked_first_run

    cpu, candidate = torch.device("cpu"), models.population("mlds-gru", kernels="some kernels")
    with mock.patch(CHECK, return_value="OutOfMemoryError: CUDA") as check:
        _checked_first_run("mlds-gru", cpu, candidate)
        _checked_first_run("mlds-gru", cpu, candidate)
    assert check.call_count == 2


@pytest.mark.usefixtures("no_checks_yet")
def test_wrong_c_kernels_fall_back_head_first_then_recurrence():
    if not models.native_available():
        pytest.skip(f"C kernels unavailable: {models.native_unavailable_reason()}")
    from mlc.models.native import _gru as _gru_native
    from mlc.models.native import _head as _head_native
    from mlc.work._kernels import _FIRST_RUNS

    cpu = torch.device("cpu")
    assert work.population_for("mlds-gru", cpu).kernels.startswith("C kernels, ")
    _FIRST_RUNS.clear()
    head = _head_native.head_loss_native
    with mock.patch.object(_head_native, "head_loss_native", lambda *args: head(*args) * 2):
        population = work.population_for("mlds-gru", cpu)
    assert population.head_loss is None
    assert population.kernels.startswith("C kernels (PyTorch head), ")
    assert "; C head failed its first run: a first step disagreed with the PyTorch path" in population.kernels
    _FIRST_RUNS.clear()
    evaluate = _head_native.head_eval_native

    def miscounting(*args):
        loss, correct = evaluate(*args)
        return loss, correct + 3

    with mock.patch.object(_head_native, "head_eval_native", miscounting):
        population = work.population_for("mlds-gru", cpu)
    assert population.head_eval is None and population.head_loss is None
    assert "; C head failed its first run: a first evaluation disagreed" in population.kernels
    _FIRST_RUNS.clear()
    with mock.patch.object(_gru_native, "gru_layer_native", side_effect=RuntimeError("illegal instruction")):
        population = work.population_for("mlds-gru", cpu)
    assert population.kernels == (
        "PyTorch GRU (C kernels failed their first run: RuntimeError: illegal instruction)"
    )


def test_reports_a_kernel_that_cannot_launch():
    def broken(*_):
        raise RuntimeError("PTX .version 8.7 does not support .target sm_61\nmore detail")

    failure = first_run_failure(_with_layer(broken), models.population("mlds-gru"), torch.device("cpu"))
    assert failure == "RuntimeError: PTX .version 8.7 does not support .target sm_61"


@pytest.mark.parametrize("corrupt", [lambda h: h * 1.01, lambda h: h * float("nan")], ids=["off", "nan"])
def test_reports_a_kernel_that_computes_wrongly(corrupt):
    def wrong(*args):
        return corrupt(models.gru_layer_manual(*args))

    failure = first_run_failure(_with_layer(wrong), models.population("mlds-gru"), torch.device("cpu"))
    assert failure is not None and failure.startswith("a first step disagreed with the PyTorch path")


def _triton_choices() -> dict[str, str | None]:
    """What population_for's CUDA branch picks (run on the CPU by the interpreter) when the kernels
    work, when the GRU kernel cannot launch, and when the head computes a wrong loss."""
    from mlc.models.triton import _gru as _gru_triton
    from mlc.models.triton import _head as _head_triton
    from mlc.work._kernels import _FIRST_RUNS, _triton_population_for

    cpu = torch.device("cpu")

    def pick(head: str = "fused", precision: str = "ieee") -> dict[str, str | None]:
        _FIRST_RUNS.clear()
        population = _triton_population_for("mlds-gru", cpu, head, precision)
        return {"kernels": population.kernels, "gru": population.gru_layer.__name__}

    results = {"working": pick(), "tf32x3": pick("torch", "tf32x3")}
    launch_error = RuntimeError("PTX .version 8.7 does not support .target sm_61")
    with mock.patch.object(_gru_triton, "_forward", side_effect=launch_error):
        results["gru_fails"] = pick()
    run = _head_triton._run

    def wrong_loss(*args, **kwargs):
        loss, *rest = run(*args, **kwargs)
        return (loss * 2, *rest)

    with mock.patch.object(_head_triton, "_run", wrong_loss):
        results["head_wrong"] = pick()
    return results


@pytest.fixture(scope="module")
def choices(run_interpreted) -> dict[str, dict]:
    pytest.importorskip("triton")
    return run_interpreted(__file__)


def test_triton_kernels_that_pass_are_used(choices):
    assert choices["working"] == {"kernels": "fused Triton GRU (ieee) and head (ieee)", "gru": "time_major"}
    assert choices["tf32x3"]["kernels"] == "fused Triton GRU (tf32x3)"


def test_a_gru_kernel_that_cannot_launch_falls_back_to_pytorch(choices):
    assert choices["gru_fails"] == {
        "kernels": "PyTorch GRU (Triton kernels failed their first run: "
        "RuntimeError: PTX .version 8.7 does not support .target sm_61)",
        "gru": "gru_layer_manual",
    }


def test_a_wrong_head_falls_back_to_the_pytorch_head(choices):
    kernels = choices["head_wrong"]["kernels"]
    assert kernels.startswith("fused Triton GRU (ieee); Triton head failed its first run: a first step")
    assert choices["head_wrong"]["gru"] == "time_major"


if __name__ == "__main__":
    print(json.dumps(_triton_choices()))
