"""The fused Triton MLP head + loss on a GPU: correctness against float64, and its time against the
PyTorch head (cuBLAS batched GEMMs + elementwise BCE) measured in the same run.

    python benchmarks/head_kernel_check.py                  # 16,384 models, L=100, B=32
    python benchmarks/head_kernel_check.py --models 4096
    TRITON_INTERPRET=1 python benchmarks/head_kernel_check.py --device cpu --models 4 --length 5   # dry run

Times one forward + backward of the head and loss alone (inputs as the last GRU layer leaves them:
the batch-major kernel output seen time-major), for the default tile and two alternatives in "ieee"
precision and two tiles in "tf32x3" (tensor cores; an sm_90a build spills ~200-250 bytes per thread
there and issues ~24% more instructions per row, so only a GPU can say whether it pays); the last
line is `ratio torch/fused: <x>x` for the default.
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
import torch.nn.functional as F

from mlc.models.triton._head import head_loss_triton

WIDTHS = (12, 12, 24, 12, 8)
# (precision, rows per tile, warps): the kernel's default first
CONFIGS = (("ieee", 32, 4), ("ieee", 16, 2), ("ieee", 64, 4), ("tf32x3", 16, 2), ("tf32x3", 32, 4))
DEVICE = "cuda"


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _torch_head(h, y, fcs):
    m, length, b, hidden = h.shape
    a = h.reshape(m, length * b, hidden)
    for i, (w, bias) in enumerate(fcs):
        a = torch.baddbmm(bias.unsqueeze(1), a, w.transpose(1, 2))
        if i < len(fcs) - 1:
            a = torch.relu(a)
    return F.binary_cross_entropy_with_logits(a, y.reshape(a.shape), reduction="none").mean(dim=(1, 2))


def _inputs(m, length, b, dtype=torch.float32):
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    h = torch.randn(m, b, length, WIDTHS[0], device=DEVICE, generator=gen, dtype=dtype).transpose(1, 2)
    y = (torch.rand(m, length, b, WIDTHS[-1], device=DEVICE, generator=gen) > 0.5).to(dtype)
    fcs = [
        (0.5 * torch.randn(m, o, i, device=DEVICE, generator=gen, dtype=dtype),
         0.2 * torch.randn(m, o, device=DEVICE, generator=gen, dtype=dtype))
        for i, o in zip(WIDTHS, WIDTHS[1:], strict=False)
    ]  # fmt: skip
    return h, y, fcs


def _leaves(h, fcs):
    return [h.detach().requires_grad_()] + [t.detach().requires_grad_() for pair in fcs for t in pair]


def _step(fn, h, y, fcs):
    leaves = _leaves(h, fcs)
    loss = fn(leaves[0], y, list(zip(leaves[1::2], leaves[2::2], strict=True)))
    return [loss, *torch.autograd.grad(loss.sum(), leaves)]


def _timed(fn, h, y, fcs, repeats=5):
    _step(fn, h, y, fcs)  # compile, autotune, allocator
    _sync()
    start = time.perf_counter()
    for _ in range(repeats):
        _step(fn, h, y, fcs)
    _sync()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=16384)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    h, y, fcs = _inputs(min(64, args.models), args.length, args.batch, torch.float64)
    exact = _step(_torch_head, h, y, fcs)
    for precision in dict.fromkeys(p for p, _, _ in CONFIGS):
        fn = functools.partial(head_loss_triton, precision=precision)
        fused = _step(fn, h.float(), y.float(), [(w.float(), b.float()) for w, b in fcs])
        errors = [((a.double() - b).norm() / b.norm()).item() for a, b in zip(fused, exact, strict=True)]
        print(f"{precision}: max relative error against float64 (loss and 9 gradients): {max(errors):.2e}")
    h, y, fcs = _inputs(args.models, args.length, args.batch)
    start = time.perf_counter()
    _step(head_loss_triton, h, y, fcs)
    _sync()
    print(f"first call (compile): {time.perf_counter() - start:.1f} s")
    t_torch = _timed(_torch_head, h, y, fcs)
    print(f"{args.models} models: torch head {t_torch * 1e3:.1f} ms per step")
    times = {}
    for config in CONFIGS:  # the default first
        precision, block_r, num_warps = config
        fn = functools.partial(head_loss_triton, precision=precision, block_r=block_r, num_warps=num_warps)
        times[config] = _timed(fn, h, y, fcs)
        print(f"  fused, {precision}, {block_r} rows x {num_warps} warps: {times[config] * 1e3:.1f} ms")
    best = min(times, key=times.get)
    speedup = t_torch / times[best]
    print(f"fastest: {best[0]}, {best[1]} rows x {best[2]} warps ({speedup:.2f}x the torch head)")
    print(f"ratio torch/fused: {t_torch / times[CONFIGS[0]]:.2f}x")


if __name__ == "__main__":
    main()
