"""The C kernels (GRU recurrence; MLP head fused with the loss) against float64 PyTorch references.

The kernels run wherever a C compiler builds them; on a machine without one the tests that need them
skip with the reason, and the fallback tests below still run.
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from head_reference import count_bounds, head_loss

from mlc import models, work
from mlc.models._gru_manual import gru_layer_manual

TOLERANCE = 1e-5  # relative, float32 kernels against float64 references; measured ~1e-7 to 5e-7

needs_native = pytest.mark.skipif(
    not models.native_available(), reason=f"C kernels unavailable: {models.native_unavailable_reason()}"
)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    if not torch.isfinite(a).all():
        return math.inf
    return ((a - b).norm() / b.norm()).item()


def _gru_rows(x: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
    """The C layer with the rows contract of gru_layer_manual: [M, L, B, I] -> [M, L, B, H]."""
    from mlc.models.native._gru import LANE_LAYOUT, gru_layer_native

    return LANE_LAYOUT.leave(gru_layer_native(LANE_LAYOUT.enter(x), *weights), x.shape[2])


def _head_rows(h: torch.Tensor, y: torch.Tensor, fcs) -> torch.Tensor:
    """The C head on rows h [M, L, B, H] (entering the lane layout), targets y [M, L, B, O]."""
    from mlc.models.native._gru import LANE_LAYOUT
    from mlc.models.native._head import head_loss_native

    return head_loss_native(LANE_LAYOUT.enter(h), y, fcs)


@needs_native
@pytest.mark.parametrize(
    "m, length, b, n_in, hidden, x_grad",
    [
        (3, 7, 5, 5, 12, False),  # fewer sequences than one 8- or 16-lane vector
        (2, 9, 32, 12, 12, True),  # the training shape's batch: whole lane vectors
        (2, 5, 37, 12, 12, True),  # a partial last lane vector
        (2, 6, 17, 3, 4, True),  # hidden size under one register block
        (2, 6, 17, 5, 7, True),  # sizes that leave a partial register block (units, inputs, gate rows)
    ],
)
def test_gru_layer_matches_float64_reference(m, length, b, n_in, hidden, x_grad):
    torch.manual_seed(0)
    bound = 2 / math.sqrt(hidden)
    inputs = [
        torch.randn(m, length, b, n_in),
        torch.empty(m, 3 * hidden, n_in).uniform_(-bound, bound),
        torch.empty(m, 3 * hidden, hidden).uniform_(-bound, bound),
        torch.empty(m, 3 * hidden).uniform_(-bound, bound),
        torch.empty(m, 3 * hidden).uniform_(-bound, bound),
    ]
    native = [t.clone().requires_grad_(i > 0 or x_grad) for i, t in enumerate(inputs)]
    ref = [t.double().requires_grad_(i > 0 or x_grad) for i, t in enumerate(inputs)]
    h, h_ref = _gru_rows(*native), gru_layer_manual(*ref)
    grad = torch.randn_like(h_ref)
    h.backward(grad.float())
    h_ref.backward(grad)
    assert _rel(h, h_ref) < TOLERANCE
    for name, a, r in zip(("x", "w_ih", "w_hh", "b_ih", "b_hh"), native, ref, strict=True):
        if a.requires_grad:
            assert _rel(a.grad, r.grad) < TOLERANCE, name
        else:
            assert a.grad is None


@needs_native
@pytest.mark.parametrize(
    "rows, widths", [(3200, (12, 12, 24, 12, 8)), (37, (12, 12, 24, 12, 8)), (5, (5, 3, 2))]
)
def test_head_loss_matches_float64_reference(rows, widths):
    torch.manual_seed(1)
    m = 3
    h = torch.randn(m, 2, rows, widths[0])  # two steps of `rows` sequences
    y = (torch.rand(m, 2, rows, widths[-1]) > 0.5).float()
    fcs = [
        (torch.randn(m, o, i) * 0.5, torch.randn(m, o) * 0.2)
        for i, o in zip(widths[:-1], widths[1:], strict=False)
    ]
    upstream = torch.rand(m) + 0.5  # a per-model scale, as a weighted sum of losses would give
    native = [t.clone().requires_grad_() for t in (h, *[t for pair in fcs for t in pair])]
    ref = [t.detach().double().requires_grad_() for t in native]
    loss = _head_rows(native[0], y, list(zip(native[1::2], native[2::2], strict=True)))
    loss_ref = head_loss(ref[0], y.double(), list(zip(ref[1::2], ref[2::2], strict=True)))
    (loss * upstream).sum().backward()
    (loss_ref * upstream.double()).sum().backward()
    assert _rel(loss, loss_ref) < TOLERANCE
    for i, (a, r) in enumerate(zip(native, ref, strict=True)):
        assert _rel(a.grad, r.grad) < TOLERANCE, i
    with torch.no_grad():  # the loss-only path gives the same numbers
        assert torch.equal(_head_rows(h, y, fcs), loss.detach())


@needs_native
@pytest.mark.parametrize("rows", [32, 37, 5])  # whole lane vectors, a partial last one, under one
def test_head_eval_counts_the_outputs_the_reference_gets_right(rows):
    from mlc.models.native._gru import LANE_LAYOUT
    from mlc.models.native._head import head_eval_native

    torch.manual_seed(2)
    m, widths = 3, (12, 12, 24, 12, 8)
    h = torch.randn(m, 4, rows, widths[0])
    y = (torch.rand(m, 4, rows, widths[-1]) > 0.5).float()
    fcs = [
        (torch.randn(m, o, i) * 0.5, torch.randn(m, o) * 0.2)
        for i, o in zip(widths[:-1], widths[1:], strict=True)
    ]
    loss, correct = head_eval_native(LANE_LAYOUT.enter(h), y, fcs)
    assert torch.equal(loss, _head_rows(h, y, fcs))  # the same pass as the training loss
    assert correct.dtype == torch.float32
    low, high = count_bounds(h, y, fcs)  # a float32 logit within 1e-5 of 0 may take either sign
    assert ((low <= correct) & (correct <= high)).all(), (correct, low, high)
    assert correct.min() > 0 and correct.max() < y[0].numel()  # counts, neither none nor all


@needs_native
def test_head_reads_targets_through_their_strides():
    """The trainer hands the head a time-major view of whole gathered sequences [M, B, L, O]; the
    kernel reads it in place, with the results of C-ordered targets, bit for bit."""
    from mlc.models.native._gru import LANE_LAYOUT
    from mlc.models.native._head import head_eval_native, head_loss_native

    torch.manual_seed(4)
    m, length, rows, widths = 3, 4, 37, (12, 12, 24, 12, 8)
    h = LANE_LAYOUT.enter(torch.randn(m, length, rows, widths[0]))
    batch_major = (torch.rand(m, rows, length, widths[-1]) > 0.5).float()
    y = batch_major.transpose(1, 2)
    assert not y.is_contiguous()
    fcs = [
        (torch.randn(m, o, i, requires_grad=True), torch.randn(m, o, requires_grad=True))
        for i, o in zip(widths[:-1], widths[1:], strict=True)
    ]
    weights = [t for pair in fcs for t in pair]
    strided, dense = (head_loss_native(h, targets, fcs) for targets in (y, y.contiguous()))
    assert torch.equal(strided, dense)
    grads = [torch.autograd.grad(loss.sum(), weights) for loss in (strided, dense)]
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
    for a, b in zip(head_eval_native(h, y, fcs), head_eval_native(h, y.contiguous(), fcs), strict=True):
        assert torch.equal(a, b)


@needs_native
def test_head_loss_rejects_shapes_that_do_not_chain():
    from mlc.models.native._gru import LANE_LAYOUT
    from mlc.models.native._head import head_loss_native

    h, y = torch.randn(2, 3, 10, 12), torch.zeros(2, 3, 10, 8)
    lanes = LANE_LAYOUT.enter(h)
    with pytest.raises(ValueError, match="chain"):
        head_loss_native(lanes, y, [(torch.randn(2, 8, 11), torch.randn(2, 8))])
    with pytest.raises(ValueError, match="targets"):
        head_loss_native(lanes, y[..., :4], [(torch.randn(2, 8, 12), torch.randn(2, 8))])
    with pytest.raises(ValueError, match="float32"):
        head_loss_native(lanes.double(), y, [(torch.randn(2, 8, 12), torch.randn(2, 8))])
    with pytest.raises(ValueError, match="lane layout"):  # rows where lanes belong
        head_loss_native(h.transpose(2, 3), y, [(torch.randn(2, 8, 12), torch.randn(2, 8))])


@needs_native
def test_cpu_picks_the_native_kernels_and_they_agree_with_the_reference_module():
    population = work.population_for("mlds-gru", torch.device("cpu"))
    assert population.head_loss is not None
    seeds = [3, 4]
    flat = population.init(seeds)
    x = torch.rand(2, 6, 20, 5).round()
    with torch.no_grad():
        logits = population.forward(flat, x)
        for m, seed in enumerate(seeds):
            assert (logits[m] - models.get("mlds-gru", seed=seed)(x[m])).abs().max() < 1e-5
        y = (torch.rand(2, 6, 20, 8) > 0.5).float()
        views = population.views(flat)
        x_tm, y_tm = x.transpose(1, 2).contiguous(), y.transpose(1, 2).contiguous()
        fused = population.loss_views(views, x_tm, y_tm)
        plain = models.population("mlds-gru").loss_views(views, x_tm, y_tm)
    assert (fused - plain).abs().max() < 1e-6


@needs_native
def test_results_do_not_depend_on_the_thread_split():
    torch.manual_seed(2)
    inputs = [
        torch.randn(5, 4, 16, 5),
        *(torch.randn(5, 36, k) * 0.3 for k in (5, 12)),
        *torch.randn(2, 5, 36),
    ]
    try:
        models.set_native_threads(1)
        one = _gru_rows(*inputs)
        models.set_native_threads(3)
        three = _gru_rows(*inputs)
    finally:
        models.set_native_threads(None)
    assert torch.equal(one, three)
    assert torch.equal(_gru_rows(*(t[2:3] for t in inputs)), one[2:3])  # nor on the other models


def test_model_ranges_cover_the_models_in_near_equal_contiguous_pieces():
    assert models.model_ranges(5, 3) == [(0, 1), (1, 3), (3, 5)]
    assert models.model_ranges(2, 4) == [(0, 1), (1, 2)]  # no empty piece
    assert models.model_ranges(7, 1) == [(0, 7)] and models.model_ranges(0, 3) == []


def test_pieces_run_on_their_own_threads_with_single_threaded_kernels():
    def piece(k: int) -> tuple[int, int, int]:
        return k, threading.get_ident(), models.native_threads()

    models.set_native_threads(3)
    try:
        ran = models.run_parallel([functools.partial(piece, k) for k in range(3)])
        assert [k for k, _, _ in ran] == [0, 1, 2]  # results in order
        assert {t for _, _, t in ran} == {1} and models.native_threads() == 3
        assert threading.get_ident() not in {ident for _, ident, _ in ran}
        (alone,) = models.run_parallel([functools.partial(piece, 0)])  # one piece: no thread
        assert alone == (0, threading.get_ident(), 3)

        def slow_piece(k: int) -> tuple[int, int, int]:
            time.sleep(0.1)  # long enough that a pool would run two of them on two threads
            return piece(k)

        def outer() -> list[tuple[int, int, int]]:
            inner = models.run_parallel([functools.partial(slow_piece, 1)] * 2)
            return [(0, threading.get_ident(), 0), *inner]

        # a piece's own pieces run one after another on its thread
        for mine, *inner in models.run_parallel([outer, outer]):
            assert {ident for _, ident, _ in inner} == {mine[1]} != {threading.get_ident()}
    finally:
        models.set_native_threads(None)


def test_a_failed_piece_is_raised_after_the_others_finish():
    finished = []

    def slow() -> None:
        time.sleep(0.2)
        finished.append("slow")

    def fails() -> None:
        raise ValueError("this piece failed")

    with pytest.raises(ValueError, match="this piece failed"):
        models.run_parallel([fails, slow])
    assert finished == ["slow"]


def _reason_in_child(env: dict[str, str]) -> str:
    """What a fresh process reports (the kernels are built and cached once per process)."""
    code = (
        "import torch; from mlc import models, work; print(models.native_unavailable_reason()); "
        "population = work.population_for('mlds-gru', torch.device('cpu')); "
        "print(population.kernels); print(population.head_loss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_falls_back_to_pytorch_when_disabled():
    out = _reason_in_child({"MLC_NATIVE": "0"})
    assert "disabled by MLC_NATIVE=0" in out and out.strip().endswith("None")
    assert "PyTorch GRU (C kernels unavailable: disabled by MLC_NATIVE=0)" in out  # what `mlc run` shows


def test_falls_back_with_the_reason_when_no_compiler_works(tmp_path):
    missing = _reason_in_child({"CC": "no-such-cc", "XDG_CACHE_HOME": str(tmp_path)})
    assert "no C compiler" in missing and missing.strip().endswith("None")
    broken = _reason_in_child({"CC": "false", "XDG_CACHE_HOME": str(tmp_path)})
    assert "failed to build" in broken and broken.strip().endswith("None")


@needs_native
def test_head_loss_keeps_nan_like_torch():
    h, y = torch.randn(1, 2, 10, 12), torch.zeros(1, 2, 10, 8)
    fcs = [(torch.randn(1, 12, 12), torch.randn(1, 12)), (torch.randn(1, 8, 12), torch.randn(1, 8))]
    fcs[0][0][0, 0, 0] = float("nan")  # a NaN before a hidden ReLU must not be rectified away
    assert torch.isnan(_head_rows(h, y, fcs)).all()
    assert torch.isnan(head_loss(h, y, fcs)).all()


@needs_native
def test_gru_layer_keeps_nan_and_saturates_like_torch():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 20, 5) * 50  # pre-activations far past the exp clamps, both signs
    x[0, 2, 3, 1] = float("nan")  # a diverged input stays NaN from its step on, in its own sequence only
    weights = [torch.randn(2, 36, 5), torch.randn(2, 36, 12), torch.randn(2, 36), torch.randn(2, 36)]
    h = _gru_rows(x, *weights)
    ref = gru_layer_manual(*(t.double() for t in (x, *weights)))
    assert torch.isnan(h[0, 2:, 3]).all() and torch.isnan(ref[0, 2:, 3]).all()
    finite = ~torch.isnan(ref)
    assert torch.isfinite(h[finite]).all()
    assert (h[finite] - ref[finite]).abs().max() < 1e-5


@needs_native
def test_head_loss_rejects_calls_it_cannot_compute():
    from mlc.models.native._gru import LANE_LAYOUT
    from mlc.models.native._head import head_loss_native

    h, y = LANE_LAYOUT.enter(torch.randn(2, 1, 10, 12)), torch.zeros(2, 1, 10, 8)
    fc = (torch.randn(2, 8, 12), torch.randn(2, 8))
    with pytest.raises(ValueError, match="chain"):  # an extra, empty dimension once crashed the process
        head_loss_native(h, y, [(torch.empty(2, 8, 12, 0), fc[1])])
    with pytest.raises(ValueError, match="layers"):
        head_loss_native(h, y, [])
    with pytest.raises(ValueError, match="constants"):
        head_loss_native(h, y.clone().requires_grad_(), [fc])
    with pytest.raises(ValueError, match="no rows"):
        head_loss_native(h[:, :0], y[:, :0], [fc])
    with pytest.raises(ValueError, match="padded"):
        from mlc.models.native._gru import gru_layer_native

        gru_layer_native(
            torch.randn(2, 1, 5, 3), *(torch.randn(2, 36, k) for k in (5, 12)), *torch.randn(2, 2, 36)
        )


@needs_native
def test_head_gradients_are_not_the_saved_tensors():
    """Backward hands the kernel's own gradients on when the upstream gradient is all ones (as
    `loss.sum()` gives); nothing the graph keeps for a later backward may alias what a caller gets."""
    from mlc.models.native._gru import LANE_LAYOUT
    from mlc.models.native._head import head_loss_native

    torch.manual_seed(3)
    h = LANE_LAYOUT.enter(torch.randn(2, 5, 2, 12)).requires_grad_()  # the head's own input as a leaf
    fc = (torch.randn(2, 8, 12, requires_grad=True), torch.randn(2, 8, requires_grad=True))
    loss = head_loss_native(h, torch.zeros(2, 5, 2, 8), [fc]).sum()
    leaves = (h, *fc)
    loss.backward(retain_graph=True)
    first = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad.zero_()  # changing a gradient in place must not touch what backward keeps
    loss.backward(retain_graph=True)
    assert all(torch.equal(t.grad, f) for t, f in zip(leaves, first, strict=True))
    loss.backward(retain_graph=True)  # accumulates into .grad
    assert all(torch.equal(t.grad, 2 * f) for t, f in zip(leaves, first, strict=True))
    # autograd.grad returns what backward returned, uncopied
    given = torch.autograd.grad(loss, leaves, retain_graph=True)
    again = torch.autograd.grad(loss, leaves, retain_graph=True)
    for g in given:
        g.zero_()
    assert all(torch.equal(g, f) for g, f in zip(again, first, strict=True))
    assert all(torch.equal(g, f) for g, f in zip(torch.autograd.grad(loss, leaves), first, strict=True))


_CHILD_CHECK = """
import torch
from mlc import models, work
from mlc.models._gru_manual import gru_layer_manual
from mlc.models.native._gru import LANE_LAYOUT, gru_layer_native
from mlc.models.native._head import head_eval_native, head_loss_native
assert models.native_available(), models.native_unavailable_reason()
torch.manual_seed(0)
x = torch.randn(3, 5, 21, 5)
wi, wh = (torch.randn(3, 21, k) * 0.4 for k in (5, 7))  # H = 7: whole and partial register blocks
bi, bh = torch.randn(2, 3, 21)
inputs = [t.requires_grad_() for t in (x, wi, wh, bi, bh)]
lanes = gru_layer_native(LANE_LAYOUT.enter(x), *inputs[1:])
h = LANE_LAYOUT.leave(lanes, 21)
refs = [t.detach().double().requires_grad_() for t in inputs]
ref = gru_layer_manual(*refs)
g = torch.randn_like(ref)
torch.autograd.backward([h, ref], [g.float(), g])
def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()
grads = max(rel(a.grad, r.grad) for a, r in zip(inputs, refs))
# the head, with gradients: 5 steps of 21 rows leave a partial group of lane vectors
fc = [t.requires_grad_() for t in (torch.randn(3, 8, 7), torch.randn(3, 8))]
y = (torch.rand(3, 5, 21, 8) > 0.5).float()
lanes = lanes.detach().requires_grad_()
ref = ref.detach().requires_grad_()
fc_ref = [t.detach().double().requires_grad_() for t in fc]
loss = head_loss_native(lanes, y, [fc])
z = torch.einsum("mlbh,moh->mlbo", ref, fc_ref[0]) + fc_ref[1][:, None, None]
bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y.double(), reduction="none")
loss_ref = bce.mean(dim=(1, 2, 3))
torch.autograd.backward([loss.sum(), loss_ref.sum()])
dh = LANE_LAYOUT.leave(lanes.grad, 21)
grads = max(grads, rel(dh, ref.grad), *(rel(a.grad, r.grad) for a, r in zip(fc, fc_ref)))
with torch.no_grad():
    eval_loss, correct = head_eval_native(lanes, y, [fc])
flips = (correct.double() - ((z > 0) == (y > 0.5)).sum(dim=(1, 2, 3))).abs().max().item()
print(max(rel(h, ref), grads, rel(loss, loss_ref), rel(eval_loss, loss_ref), flips))
"""


@needs_native
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.uname().machine != "x86_64", reason="x86-64 only"
)
@pytest.mark.parametrize("arch", ["x86-64-v3", "x86-64"])  # AVX2 hosts, and the x86-64 baseline (SSE2)
def test_kernels_build_and_agree_without_avx512(arch, tmp_path):
    env = {**os.environ, "MLC_NATIVE_ARCH": arch, "XDG_CACHE_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD_CHECK], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(out.stdout.strip()) < TOLERANCE


def test_a_failed_build_is_remembered_and_a_damaged_one_rebuilt(tmp_path):
    broken = _reason_in_child({"CC": "false", "XDG_CACHE_HOME": str(tmp_path)})
    remembered = list((tmp_path / "mlc" / "native").glob("*.failed"))
    assert len(remembered) == 1 and str(remembered[0]) in broken
    if not models.native_available():
        return
    cache = tmp_path / "fresh"
    assert _reason_in_child({"XDG_CACHE_HOME": str(cache)}).startswith("None")
    (built,) = (cache / "mlc" / "native").glob("kernels-*.so")
    built.write_bytes(b"")  # a truncated copy
    assert _reason_in_child({"XDG_CACHE_HOME": str(cache)}).startswith("None")
    assert built.stat().st_size > 0


_FORK_CHECK = """
import multiprocessing, torch
from mlc import models, work
from mlc.models.native._gru import LANE_LAYOUT, gru_layer_native
models.set_native_threads(2)
x = LANE_LAYOUT.enter(torch.randn(4, 3, 5, 5))
args = (x, torch.randn(4, 36, 5), torch.randn(4, 36, 12), *torch.randn(2, 4, 36))
gru_layer_native(*args)  # starts the kernels' thread pool

def child(_):
    return float(gru_layer_native(*args).sum())

with multiprocessing.get_context("fork").Pool(1) as pool:
    print(pool.map_async(child, [0]).get(timeout=60))
"""


@needs_native
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork start method")
def test_forked_children_can_run_the_kernels():
    out = subprocess.run([sys.executable, "-c", _FORK_CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]


def _plant(cache: Path, text: str) -> tuple[Path, Path]:
    """Replace the built library by a file that is no library, and plant a `.failed` marker."""
    (built,) = (cache / "mlc" / "native").glob("kernels-*.so")
    built.write_bytes(b"not a library: loading it would fail")
    failed = built.with_suffix(".failed")
    failed.write_text(text)
    return built, failed


@needs_native
def test_the_kernel_cache_is_private_and_one_others_can_write_is_not_used(tmp_path):
    assert _reason_in_child({"XDG_CACHE_HOME": str(tmp_path)}).startswith("None")
    folder = tmp_path / "mlc" / "native"
    assert folder.stat().st_mode & 0o777 == 0o700
    built, failed = _plant(tmp_path, "PLANTED: kernels off")
    folder.chmod(0o777)  # writable by anyone
    out = _reason_in_child({"XDG_CACHE_HOME": str(tmp_path)})
    assert out.startswith("None") and "PLANTED" not in out  # built and run, the marker not believed
    assert f"built in a private folder: the kernel cache is not private ({folder} is writable by others " \
        "(mode 777))" in out
    assert built.read_bytes().startswith(b"not a library")  # left alone, never loaded


@needs_native
@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_cached_files_of_another_user_are_not_used(tmp_path):
    assert _reason_in_child({"XDG_CACHE_HOME": str(tmp_path)}).startswith("None")
    built, failed = _plant(tmp_path, "PLANTED: kernels off")
    for path in (built, failed):
        os.chown(path, 65534, 65534)  # nobody
    out = _reason_in_child({"XDG_CACHE_HOME": str(tmp_path)})
    assert out.startswith("None") and "PLANTED" not in out
    assert "built in a private folder: a cached file is not trusted (" in out
    assert "is owned by uid 65534, not by this user (uid 0)" in out
