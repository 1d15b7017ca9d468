"""GPU check of the fused Triton GRU layer: correctness, start-up, a tile sweep, and stack timings.

On a CUDA machine (needs torch and triton, nothing else installed; `src/` is put on sys.path):
    python3 benchmarks/gru_kernel_check.py                      # everything, < 4 min on an H100
    python3 benchmarks/gru_kernel_check.py --check              # correctness only
    python3 benchmarks/gru_kernel_check.py --models 1024,4096,16384 --json $OUT/gru.json
CPU smoke test through Triton's interpreter (tiny sizes):
    TRITON_INTERPRET=1 python3 benchmarks/gru_kernel_check.py --models 2 --batch 4 --length 5

Sections, most important first (the later ones are cut when --budget runs out): (0) start-up: wall
time of the first 4-layer forward+backward per precision, compiles included (fresh Triton cache);
(a) correctness: forward and all five gradients of gru_layer_triton, and of gru_layer_torch in
float32, against gru_layer_torch in float64 on fresh random data (freed memory poisoned with NaN),
plus a full Population forward/backward; (c) the 4-layer GRU stack (I=5 then 12, B=32, L=100)
forward+backward timed by triton.testing.do_bench (median) per model count with the default tiles,
and the torch path for small M: model-steps/s of the GRU stack alone, peak memory; (b) a sweep that
times one I=12 layer's forward and backward kernels alone per (block_b, num_warps) tile, then (c)
again with each precision's fastest tiles. A size that runs out of memory is reported and skipped;
a precision that fails to compile is reported and the others go on. The summary table is last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path

os.environ.setdefault("TRITON_CACHE_DIR", tempfile.mkdtemp(prefix="gru-triton-cache-"))  # cold start
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from mlc.models import MLDS_GRU, Population, from_batch_major  # noqa: E402
from mlc.models._gru_torch import gru_layer_torch  # noqa: E402
from mlc.models.triton._gru import (  # noqa: E402
    _DEFAULT_TILES,
    _backward,
    _forward,
    _FusedGRULayer,
    _Launch,
    gru_layer_triton,
    triton_available,
)

HIDDEN, LAYERS = 12, 4
GRAD_NAMES = ("x", "w_ih", "w_hh", "b_ih", "b_hh")
SWEEP = {  # (block_b, num_warps, maxnreg) tried for each kernel; maxnreg None = compiler's choice
    "ieee": [(32, 4, None), (32, 8, None), (32, 2, None), (16, 2, None), (16, 4, None)],
    "tf32x3": [(32, 2, None), (32, 4, None), (16, 1, None), (16, 2, None)],
}
ACCURACY_LIMIT = {"ieee": 1e-5, "tf32x3": 1e-5, "tf32": 1e-2, "torch32": 1e-5}  # max relative error


def main() -> None:
    args = _parse()
    started = time.perf_counter()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not triton_available(dev):
        sys.exit("no fused path here: run on a CUDA GPU, or set TRITON_INTERPRET=1 for a CPU smoke test")
    _print_environment(dev)
    report: dict = {"device": _device_name(dev), "args": vars(args)}
    precisions = args.precisions.split(",")
    report["startup"] = _startup(dev, precisions, args)
    report["check"] = _check(dev, precisions + ["tf32"], args)
    if not args.check:  # most important first: later sections are cut when the budget is spent
        deadline = started + args.budget
        defaults = [(p, "default", partial(_default_layer, precision=p)) for p in precisions]
        report["stack"] = _stack(dev, defaults, args, deadline, with_torch=True)
        report["sweep"] = _sweep(dev, precisions, args, deadline)
        report["stack"] += _stack(dev, _swept_configs(report["sweep"]), args, deadline)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    _print_tables(report)
    print(f"total wall time {time.perf_counter() - started:.1f} s")


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="1024,4096,16384", help="model counts M for the stack timings")
    p.add_argument("--check", action="store_true", help="only start-up and correctness")
    p.add_argument("--precisions", default="ieee,tf32x3", help="tl.dot modes to sweep and time")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--check-models", type=int, default=64, help="M of the correctness check")
    p.add_argument("--sweep-models", type=int, default=4096, help="M of the tile sweep")
    p.add_argument("--torch-max-models", type=int, default=1024, help="largest M timed on the torch path")
    p.add_argument("--budget", type=float, default=180.0, help="seconds; later sections are skipped")
    p.add_argument("--json", default=None, help="write every number to this file")
    return p.parse_args()


# ---------------------------------------------------------------- data, timing, memory helpers


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (Triton interpreter)"


def _print_environment(dev: torch.device) -> None:
    import triton

    line = f"torch {torch.__version__}, triton {triton.__version__}, device {_device_name(dev)}"
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        line += f", {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB"
    print(line, flush=True)


def _layer_inputs(m, b, length, n_in, dev, dtype=torch.float32, scale=2.0):
    """Random layer operands like PyTorch's GRU init (uniform ±1/sqrt(H)), weights `scale` x wider."""
    k = 1 / math.sqrt(HIDDEN)
    u = lambda *shape, s=1.0: torch.empty(*shape, device=dev, dtype=dtype).uniform_(-s * k, s * k)  # noqa: E731
    x = torch.randn(m, b, length, n_in, device=dev, dtype=dtype)
    gates = 3 * HIDDEN
    return [x, u(m, gates, n_in, s=scale), u(m, gates, HIDDEN, s=scale), u(m, gates), u(m, gates)]


def _stack_inputs(m, b, length, dev):
    layers = [_layer_inputs(m, b, length, 5 if i == 0 else HIDDEN, dev, scale=1.0)[1:] for i in range(LAYERS)]
    weights = [w.requires_grad_() for layer in layers for w in layer]
    x = torch.randn(m, b, length, 5, device=dev)
    return x, weights


def _run_stack(layer_fn, x, weights, grad=None):
    h = x
    for i in range(LAYERS):
        h = layer_fn(h, *weights[4 * i:4 * i + 4])
    if grad is None:
        grad = torch.randn_like(h)
    h.backward(grad)
    return grad


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _bench_ms(fn, dev, grad_to_none=None, rep_ms=60) -> float:
    """Median milliseconds of fn(): triton.testing.do_bench on a GPU, a few wall-clock runs on CPU."""
    if dev.type == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=10, rep=rep_ms, grad_to_none=grad_to_none,
                                             return_mode="median"))
    times = []
    for _ in range(2):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def _poison(dev) -> None:
    """Fill the caching allocator's free blocks, large and small pools, with NaN, so an output the
    kernel fails to write cannot pass by reusing an earlier run's result."""
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        big = torch.empty(min(free // 2, 2**31) // 4, device=dev).fill_(float("nan"))
        small = [torch.empty(2**16, device=dev).fill_(float("nan")) for _ in range(256)]
        torch.cuda.synchronize(dev)
        del big, small


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def _rel(a: torch.Tensor | None, ref: torch.Tensor) -> float:
    if a is None:
        return math.inf
    a, ref = a.double(), ref.double()
    if not torch.isfinite(a).all():
        return math.nan
    return ((a - ref).norm() / ref.norm()).item()


# ---------------------------------------------------------------- (0) start-up


def _startup(dev, precisions, args) -> dict:
    """Seconds for the first 4-layer forward+backward (Triton compiles on first use)."""
    out = {}
    m = 8 if dev.type == "cuda" else 1
    for precision in precisions:
        x, weights = _stack_inputs(m, args.batch, args.length, dev)
        _sync(dev)
        t = time.perf_counter()
        try:
            _run_stack(partial(_default_layer, precision=precision), x, weights)
            _sync(dev)
        except Exception:  # reported; the other precisions still run
            traceback.print_exc()
            out[precision] = math.nan
            continue
        out[precision] = time.perf_counter() - t
        print(f"startup {precision}: first 4-layer forward+backward {out[precision]:.1f} s", flush=True)
    return out


# ---------------------------------------------------------------- (a) correctness


def _check(dev, precisions, args) -> list[dict]:
    m = args.check_models if dev.type == "cuda" else 2
    cases = [(m, args.batch, args.length, 5, None), (m, args.batch, args.length, 12, None)]
    if args.batch > 16:
        cases.append((m, 20, min(args.length, 30), 12, 16))  # a partial second batch chunk
    rows = []
    for m_, b, length, n_in, block_b in cases:
        inputs = _layer_inputs(m_, b, length, n_in, dev)
        grad = torch.randn(m_, b, length, HIDDEN, device=dev)
        ref = [t.double().requires_grad_() for t in inputs]
        h_ref = gru_layer_torch(*ref)
        h_ref.backward(grad.double())
        for precision in ["torch32", *precisions]:
            fused = [t.clone().requires_grad_() for t in inputs]
            _poison(dev)
            try:
                if precision == "torch32":
                    h = gru_layer_torch(*fused)
                else:
                    h = gru_layer_triton(*fused, precision=precision, block_b=block_b)
                h.backward(grad)
            except Exception:  # reported as a failed check; the other precisions still run
                traceback.print_exc()
                h = None
            errs = {"h": math.nan if h is None else _rel(h, h_ref)}
            errs.update({n: _rel(p.grad, q.grad) for n, p, q in zip(GRAD_NAMES, fused, ref, strict=True)})
            worst = max(errs.values(), key=lambda e: math.inf if math.isnan(e) else e)
            ok = not math.isnan(worst) and worst < ACCURACY_LIMIT[precision]
            rows.append({"case": f"M{m_} B{b} L{length} I{n_in}" + (f" bb{block_b}" if block_b else ""),
                         "path": precision, "max_rel": worst, "ok": ok, **errs})
            print(f"check {rows[-1]['case']:>22} {precision:>8}: max rel {worst:.2e} "
                  + " ".join(f"{k}={v:.1e}" for k, v in errs.items()) + ("" if ok else "  FAIL"), flush=True)
    rows.extend(_check_population(dev, precisions, args))
    return rows


def _check_population(dev, precisions, args) -> list[dict]:
    m = 8 if dev.type == "cuda" else 2
    seeds = list(range(m))
    plain = Population(MLDS_GRU)
    flat = plain.init(seeds).to(dev)
    x = torch.randn(m, args.batch, args.length, MLDS_GRU.input_size, device=dev)
    w_ref = flat.double().requires_grad_()
    out_ref = Population(MLDS_GRU).forward(w_ref, x.double())
    grad = torch.randn_like(out_ref)
    out_ref.backward(grad)
    rows = []
    for precision in precisions:
        w = flat.clone().requires_grad_()
        try:
            layer = from_batch_major(partial(_default_layer, precision=precision))
            out = Population(MLDS_GRU, gru_layer=layer).forward(w, x)
            out.backward(grad.float())
            errs = {"logits": _rel(out, out_ref), "flat_grad": _rel(w.grad, w_ref.grad)}
        except Exception:
            traceback.print_exc()
            errs = {"logits": math.nan, "flat_grad": math.nan}
        worst = max(errs.values(), key=lambda e: math.inf if math.isnan(e) else e)
        ok = not math.isnan(worst) and worst < ACCURACY_LIMIT[precision]
        rows.append({"case": f"population M{m}", "path": precision, "max_rel": worst, "ok": ok, **errs})
        print(f"check population M{m} {precision}: logits {errs['logits']:.2e}, "
              f"flat grad {errs['flat_grad']:.2e}" + ("" if ok else "  FAIL"), flush=True)
    return rows


# ---------------------------------------------------------------- (b) tile sweep


def _sweep(dev, precisions, args, deadline) -> dict:
    """Forward and backward kernels of one I=12 layer, timed alone for each (block_b, num_warps)."""
    m = args.sweep_models if dev.type == "cuda" else 2
    out: dict = {}
    try:
        x, w_ih, w_hh, b_ih, b_hh = _layer_inputs(m, args.batch, args.length, HIDDEN, dev)
        dh = torch.randn(m, args.batch, args.length, HIDDEN, device=dev)
    except RuntimeError as err:
        if not _is_oom(err):
            raise
        print(f"sweep: M={m} does not fit: {err}", flush=True)
        return out
    for precision in precisions:
        tiles = SWEEP.get(precision, [_DEFAULT_TILES[precision][1]])
        if dev.type != "cuda":  # the interpreter ignores tiles: two, one with a register cap
            tiles = [tiles[0], (16, 2, 128)]
        rows = out.setdefault(precision, [])
        for tile in tiles:
            if time.perf_counter() > deadline:
                print("sweep: time budget spent, remaining tiles skipped", flush=True)
                return out
            launch = _Launch(precision, tile, tile)
            row = {"tile": tile}
            try:
                t = time.perf_counter()
                h = _forward(x, w_ih, w_hh, b_ih, b_hh, launch)
                _backward(x, w_ih, w_hh, b_ih, b_hh, h, dh, launch, True)
                _sync(dev)
                row["compile_s"] = time.perf_counter() - t
                operands = (x, w_ih, w_hh, b_ih, b_hh)
                row["fwd_ms"] = _bench_ms(lambda ops=operands, lc=launch: _forward(*ops, lc), dev)
                row["bwd_ms"] = _bench_ms(
                    lambda ops=operands, h=h, lc=launch: _backward(*ops, h, dh, lc, True), dev)
            except Exception as err:  # a tile that fails to compile or launch is reported, not fatal
                row["error"] = f"{type(err).__name__}: {str(err)[:200]}"
            rows.append(row)
            print(f"sweep {precision} M={m} tile {tile}: " + ", ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return out


def _best_tile(sweep_rows: list[dict], key: str):
    ok = [r for r in sweep_rows if key in r]
    return min(ok, key=lambda r: r[key])["tile"] if ok else None


# ---------------------------------------------------------------- (c) stack timings


def _default_layer(h, *weights, precision):
    return gru_layer_triton(h, *weights, precision=precision)


def _swept_layer(h, *weights, launch):
    return _FusedGRULayer.apply(h, *weights, launch)


def _swept_configs(sweep: dict) -> list:
    """(path, name, layer function) for each precision's fastest forward and backward tiles."""
    configs = []
    for precision, rows in sweep.items():
        fwd, bwd = _best_tile(rows, "fwd_ms"), _best_tile(rows, "bwd_ms")
        if fwd and bwd and (fwd, bwd) != _DEFAULT_TILES[precision]:
            layer = partial(_swept_layer, launch=_Launch(precision, fwd, bwd))
            configs.append((precision, f"f{_tile_name(fwd)} b{_tile_name(bwd)}", layer))
    return configs


def _stack(dev, configs, args, deadline, with_torch=False) -> list[dict]:
    results = []
    for m in (int(s) for s in args.models.split(",")):
        runs = list(configs)
        if with_torch and m <= args.torch_max_models:
            runs.append(("torch", "gru_layer_torch", gru_layer_torch))
        for path, name, fn in runs:
            if time.perf_counter() > deadline:
                print("stack: time budget spent, remaining sizes skipped", flush=True)
                return results
            results.append(_time_stack(dev, m, path, name, fn, args))
    return results


def _tile_name(tile) -> str:
    block_b, num_warps, maxnreg = tile
    return f"{block_b}/{num_warps}" + (f"/r{maxnreg}" if maxnreg else "")


def _time_stack(dev, m, precision, name, fn, args) -> dict:
    row = {"models": m, "path": precision, "config": name}
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    try:
        x, weights = _stack_inputs(m, args.batch, args.length, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            base = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        grad = _run_stack(fn, x, weights)  # warm-up (compiles) and peak memory
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            peak = torch.cuda.max_memory_allocated(dev)
            row["peak_gib"] = peak / 2**30
            row["kib_per_model"] = (peak - base) / m / 2**10
        step = lambda: _run_stack(fn, x, weights, grad)  # noqa: E731
        ms = _bench_ms(step, dev, grad_to_none=weights, rep_ms=250)  # >= 2 repeats at 16k models
        row["ms"] = ms
        row["model_steps_per_s"] = m / (ms / 1e3)
    except Exception as err:
        if not _is_oom(err):
            row["error"] = f"{type(err).__name__}: {str(err)[:200]}"
        else:
            row["error"] = "out of memory"
    print("stack " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in row.items()), flush=True)
    return row


# ---------------------------------------------------------------- report


def _print_tables(report: dict) -> None:
    print(f"\n== fused GRU kernel check on {report['device']} ==")
    print("start-up (first 4-layer fwd+bwd, compiles included): "
          + ", ".join(f"{p} {s:.1f} s" for p, s in report["startup"].items()))
    fails = [r for r in report["check"] if not r["ok"]]
    worst = {}
    for r in report["check"]:  # NaN (a failed run) dominates
        e = r["max_rel"]
        worst[r["path"]] = e if math.isnan(e) else max(worst.get(r["path"], 0.0), e)
    print("correctness (max rel error vs float64, all checks): "
          + ", ".join(f"{p} {e:.1e}" for p, e in worst.items())
          + (f"  -- {len(fails)} FAILED: " + "; ".join(f"{r['case']} {r['path']}" for r in fails)
             if fails else "  -- all pass"))
    for precision, rows in report.get("sweep", {}).items():
        cells = [f"{_tile_name(r['tile'])}: " + (f"f {r['fwd_ms']:.2f} b {r['bwd_ms']:.2f}" if "bwd_ms" in r
                                                 else "error") for r in rows]
        print(f"sweep {precision} (block_b/warps[/maxnreg]: ms of one I=12 layer's fwd, bwd kernel): "
              + " | ".join(cells))
    if report.get("stack"):
        print(f"{'M':>6} {'path':>8} {'config':>24} {'ms fwd+bwd':>11} {'model-steps/s':>14} "
              f"{'peak GiB':>9} {'KiB/model':>10}")
        for r in report["stack"]:
            if "ms" in r:
                print(f"{r['models']:>6} {r['path']:>8} {r['config']:>24} {r['ms']:>11.2f} "
                      f"{r['model_steps_per_s']:>14,.0f} {r.get('peak_gib', math.nan):>9.2f} "
                      f"{r.get('kib_per_model', math.nan):>10.1f}")
            else:
                print(f"{r['models']:>6} {r['path']:>8} {r['config']:>24} {r.get('error', '?')}")


if __name__ == "__main__":
    main()
