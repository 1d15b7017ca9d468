"""The fused Triton head + loss against float64 PyTorch, run by Triton's CPU interpreter in a child
process (this file as a script; see conftest.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from head_reference import head_loss, miscounted

pytest.importorskip("triton")

TOLERANCE = 1e-5  # relative, float32 against float64; measured ~1e-7
CASES = {  # name: (M, L, B, rows per tile, warps, precision)
    "under_one_tile": (2, 3, 10, 32, 4, "ieee"),
    "partial_last_tile": (2, 5, 30, 32, 4, "ieee"),
    "small_tiles": (2, 5, 30, 16, 2, "ieee"),
    "large_tiles": (2, 5, 30, 64, 4, "ieee"),
    "tf32x3": (2, 5, 30, 16, 2, "tf32x3"),
}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    if not torch.isfinite(a).all():
        return math.inf
    return ((a - b).norm() / b.norm()).item()


def _head_errors(
    m: int, length: int, b: int, block_r: int, num_warps: int, precision: str
) -> dict[str, float]:
    from mlc.models.triton._head import head_eval_triton, head_loss_triton

    widths = [12, 12, 24, 12, 8]
    h = torch.randn(m, b, length, 12).transpose(1, 2)  # the strided view the Triton GRU returns
    y = (torch.rand(m, length, b, 8) > 0.5).float()
    fcs = [
        (torch.randn(m, o, i) * 0.5, torch.randn(m, o) * 0.2)
        for i, o in zip(widths, widths[1:], strict=False)
    ]
    upstream = torch.rand(m) + 0.5
    fused = [h.clone().requires_grad_()] + [t.clone().requires_grad_() for pair in fcs for t in pair]
    ref = [t.detach().double().requires_grad_() for t in fused]
    tile = {"block_r": block_r, "num_warps": num_warps, "precision": precision}
    loss = head_loss_triton(fused[0], y, list(zip(fused[1::2], fused[2::2], strict=True)), **tile)
    loss_ref = head_loss(ref[0], y.double(), list(zip(ref[1::2], ref[2::2], strict=True)))
    (loss * upstream).sum().backward()
    (loss_ref * upstream.double()).sum().backward()
    errors = {"loss": _rel(loss, loss_ref)}
    for i, (p, q) in enumerate(zip(fused, ref, strict=True)):
        errors[f"grad{i}"] = math.inf if p.grad is None else _rel(p.grad, q.grad)
    with torch.no_grad():
        errors["no_grad_path"] = _rel(head_loss_triton(h, y, fcs, **tile), loss.detach())
    eval_loss, correct = head_eval_triton(h, y, fcs, **tile)
    errors["eval_loss"] = _rel(eval_loss, loss.detach())
    errors["eval_miscounted"] = miscounted(correct, h, y, fcs)
    return errors


def _population_errors() -> dict[str, float]:
    from mlc.models import MLDS_GRU, Population, from_batch_major
    from mlc.models.triton._gru import gru_layer_triton
    from mlc.models.triton._head import head_eval_triton, head_loss_triton

    gru = from_batch_major(gru_layer_triton)
    fused = Population(MLDS_GRU, gru, head_loss_triton, head_eval=head_eval_triton)
    plain = Population(MLDS_GRU)
    flat = fused.init([3, 11])
    x = torch.rand(2, 6, 3, MLDS_GRU.input_size).round()  # time-major [M, L, B, I]
    y = (torch.rand(2, 6, 3, MLDS_GRU.output_size) > 0.5).float()
    w1, w2 = flat.clone().requires_grad_(), flat.clone().requires_grad_()
    loss, loss_plain = fused.loss_views(fused.views(w1), x, y), plain.loss_views(plain.views(w2), x, y)
    loss.sum().backward()
    loss_plain.sum().backward()
    seen, seen_plain = (p.loss_and_correct_views(p.views(flat), x, y) for p in (fused, plain))
    return {
        "loss": _rel(loss, loss_plain),
        "grad": _rel(w1.grad, w2.grad),
        "eval_loss": _rel(seen[0], seen_plain[0]),
        "eval_correct": _rel(seen[1], seen_plain[1]),
    }


def _validation() -> dict[str, float]:
    """1.0 for each bad call rejected with the message that names its problem."""
    from mlc.models.triton._head import head_loss_triton

    h, y = torch.zeros(1, 2, 3, 12), torch.zeros(1, 2, 3, 8)
    fcs = [(torch.zeros(1, o, i), torch.zeros(1, o)) for i, o in [(12, 12), (12, 24), (24, 12), (12, 8)]]
    calls = {
        "bad_tile": (lambda: head_loss_triton(h, y, fcs, block_r=24), "block_r"),
        "no_rows": (lambda: head_loss_triton(h[:, :0], y[:, :0], fcs), "no rows"),
        "bad_precision": (lambda: head_loss_triton(h, y, fcs, precision="fp16"), "precision"),
    }
    results = {}
    for name, (call, words) in calls.items():
        try:
            call()
            results[name] = 0.0
        except ValueError as exc:
            results[name] = float(words in str(exc))
    return results


def _tensor_core_errors() -> dict[str, float]:
    """The worst error of the tf32x3 head over L*B = 3200 rows (100 tiles) on emulated tensor cores
    (tests/models/tensor_cores.py), with the weight gradients carried across tiles added on CUDA
    cores as the kernel does, and through the tensor cores' accumulator instead."""
    from tensor_cores import carried_on_tensor_cores, emulated_tensor_cores

    from mlc.models.triton import _products as _triton_products

    def errors() -> float:
        return max(_head_errors(1, 100, 32, 32, 4, "tf32x3").values())

    with emulated_tensor_cores():
        results = {"tf32x3": errors()}
        with carried_on_tensor_cores(_triton_products):
            results["tf32x3_carried_on_tensor_cores"] = errors()
    return results


def _worker() -> None:
    torch.manual_seed(0)
    results = {name: _head_errors(*case) for name, case in CASES.items()}
    results["population"] = _population_errors()
    results["validation"] = _validation()
    results["tensor_cores"] = _tensor_core_errors()
    print(json.dumps(results))


@pytest.fixture(scope="module")
def interpreted(run_interpreted) -> dict[str, dict[str, float]]:
    return run_interpreted(__file__)


@pytest.mark.parametrize("case", sorted(CASES))
def test_head_loss_matches_float64_reference(interpreted, case):
    errors = interpreted[case]
    assert len(errors) == 13  # loss, nine gradients, the no-grad path, evaluation's loss and count
    assert all(e < TOLERANCE for e in errors.values()), errors  # inf (NaN output) fails too


def test_population_with_fused_gru_and_head_matches_plain_population(interpreted):
    errors = interpreted["population"]
    assert all(e < TOLERANCE for e in errors.values()), errors


def test_tf32x3_keeps_float32_accuracy_on_truncating_tensor_cores(interpreted):
    errors = interpreted["tensor_cores"]
    assert errors["tf32x3_carried_on_tensor_cores"] > TOLERANCE, errors  # the carried sums would fail
    assert errors["tf32x3"] < TOLERANCE, errors


def test_not_available_on_cpu_without_interpreter_or_for_other_heads():
    from mlc.models.triton._gru import _interpreted
    from mlc.models.triton._head import head_triton_available

    mlds = [(12, 12), (12, 24), (24, 12), (12, 8)]
    assert head_triton_available("cpu", mlds) == _interpreted()
    assert not head_triton_available("cpu", mlds[:3])


def test_rejects_bad_tiles_precisions_and_empty_rows(interpreted):
    assert interpreted["validation"] == {"bad_tile": 1.0, "no_rows": 1.0, "bad_precision": 1.0}


def test_population_for_rejects_unknown_heads_and_precisions_and_honours_torch():
    from mlc import work

    with pytest.raises(ValueError, match="head must be"):
        work.population_for("mlds-gru", torch.device("cpu"), head="triton")
    with pytest.raises(ValueError, match="tf32x3 on a CUDA device"):
        work.population_for("mlds-gru", torch.device("cpu"), precision="tf32x3")
    with pytest.raises(ValueError, match="precision must be"):
        work.population_for("mlds-gru", torch.device("cuda"), precision="fp16")
    assert work.population_for("mlds-gru", torch.device("cpu"), head="torch").head_loss is None


if __name__ == "__main__":
    _worker()
