"""The MLP head and the BCE loss of a population as one Triton kernel, for CUDA (`head_loss_triton`).

The role of `head_loss_native` (the CPU kernel), on rows: h [M, L, B, H] from the last GRU layer (any
strides with a dense last dim), targets y [M, L, B, O], four Linear layers with ReLU between ->
mean BCE-with-logits per model [M]. Why: unfused, each Linear is a cuBLAS batched GEMM with K = 12
to 24 (tiles built for large K) and every activation and the BCE's elementwise passes go through
HBM; the H200 profile put them at ~23% and ~20% of a 16,384-model training step.

Design. One program per model walks its L*B rows in BLOCK_R-row tiles. A tile goes through the four
layers (widths padded to powers of two >= 16 with zero weights, so padded columns stay 0), the loss,
and straight back: g = (sigmoid(z) - y) / (L*B*O), dW_l += g_l^T a_{l-1} into register accumulators,
g_{l-1} = (g_l W_l) * [a_{l-1} > 0], and dh = g_1 W_1 is stored. The model's loss and weight
gradients are written once at the end, so there are no atomics and results are deterministic;
`fused_head_loss` does the autograd. For evaluation (`head_eval_triton`) the same kernel counts the
outputs whose sign agrees with the target instead of forming gradients. float32 throughout:
`precision` "ieee" computes the products as float32 FMAs, "tf32x3" on tensor cores at float32
accuracy, with the weight gradients carried across row tiles added on CUDA cores (`_triton_products`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any

import torch

from mlc.models._fused_head import check_head, fused_head_eval, fused_head_loss
from mlc.models.triton._gru import _inner_rowmajor, triton_available
from mlc.models.triton._products import check_precision

try:
    import triton
    import triton.language as tl

    from mlc.models.triton._products import _accumulate, _mm, _split
except ImportError:  # pragma: no cover - exercised on installs without the gpu extra
    triton = None

__all__ = ["head_eval_triton", "head_loss_triton", "head_triton_available"]

_N_LAYERS = 4  # the kernel's structure; other heads use the PyTorch path
_MAX_WIDTH = 32  # padded; wider layers spill registers heavily (sm_90a build: 77 KB per thread at 64)
# (rows per tile, warps): an sm_90a build of 64 x 4 spilled (255 registers, ~1 KB per thread);
# 32 x 4 takes 190 registers without spills; head_kernel_check.py times the alternatives
_BLOCK_R = 32
_NUM_WARPS = 4


def head_triton_available(device: torch.device | str, fc_sizes: Sequence[tuple[int, int]]) -> bool:
    """Whether `head_loss_triton` runs on `device` for a head of these (in, out) Linear sizes."""
    if not triton_available(device) or len(fc_sizes) != _N_LAYERS:
        return False
    return max(_pad(n) for sizes in fc_sizes for n in sizes) <= _MAX_WIDTH


def _pad(n: int) -> int:
    return max(16, 1 << max(0, n - 1).bit_length())  # a power of two >= 16 (tl.dot's minimum)


def _run(
    h: torch.Tensor,
    y: torch.Tensor,
    params: list[torch.Tensor],
    with_grads: bool,
    with_correct: bool,
    tile: tuple[int, int],
    precision: str,
) -> tuple[Any, ...]:
    m, length, b, _ = h.shape
    weights = [_inner_rowmajor(w) for w in params[0::2]]
    biases = [_inner_rowmajor(v) for v in params[1::2]]
    widths = [h.shape[3], *(w.shape[1] for w in weights)]
    loss = torch.empty(m, device=h.device, dtype=torch.float32)
    correct = torch.empty_like(loss) if with_correct else loss
    dh = torch.empty_like(h) if with_grads else h  # same strides as h
    # the kernel never touches the pointers of what it is not asked for; other tensors stand in
    dense = torch.contiguous_format
    dws = [torch.empty_like(w, memory_format=dense) for w in weights] if with_grads else weights
    dbs = [torch.empty_like(v, memory_format=dense) for v in biases] if with_grads else biases
    interleaved = [t for pair in zip(weights, biases, strict=True) for t in pair]
    strides = [t.stride(0) for t in interleaved]
    grads = [t for pair in zip(dws, dbs, strict=True) for t in pair]
    if m:
        block_r, num_warps = tile
        with torch.cuda.device(h.device) if h.is_cuda else contextlib.nullcontext():
            _head_loss_kernel[(m,)](
                h, y, *interleaved, *strides, loss, correct, dh, *grads,
                length, b, *h.stride()[:3], *y.stride()[:3], *dh.stride()[:3], 1 / (length * b * widths[-1]),
                *widths, *(_pad(w) for w in widths),
                BLOCK_R=block_r, WITH_GRADS=with_grads, WITH_CORRECT=with_correct, PRECISION=precision,
                num_warps=num_warps, num_stages=1,
                enable_fp_fusion=True,  # named: Triton 3.9 warns when it is left to the default
            )  # fmt: skip
    return (
        loss,
        (correct if with_correct else None),
        (dh if with_grads else None),
        (grads if with_grads else []),
    )


def head_loss_triton(
    h: torch.Tensor,
    y: torch.Tensor,
    fcs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    precision: str = "ieee",
    block_r: int = _BLOCK_R,
    num_warps: int = _NUM_WARPS,
) -> torch.Tensor:
    """Mean BCE-with-logits per model of the 4-layer MLP head on `h` (see the module docstring).

    h [M, L, B, H], y [M, L, B, O] float targets, fcs [(w [M, out, in], b [M, out])] * 4 -> loss [M].
    float32 tensors on one CUDA device (or any device under TRITON_INTERPRET=1). `precision` is the
    products' ("ieee" or "tf32x3"; "tf32", ~1e-3, for measurement only); `block_r` (rows per tile, a
    power of two >= 16) and `num_warps` are tuning knobs."""
    return fused_head_loss(*_checked(h, y, fcs, precision, block_r, num_warps))


def head_eval_triton(
    h: torch.Tensor,
    y: torch.Tensor,
    fcs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    precision: str = "ieee",
    block_r: int = _BLOCK_R,
    num_warps: int = _NUM_WARPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`head_loss_triton`'s loss [M], and per model the number of outputs whose sign agrees with the
    target ((logit > 0) == (y > 0.5)) as floats [M]; no gradients."""
    return fused_head_eval(*_checked(h, y, fcs, precision, block_r, num_warps))


def _checked(
    h: torch.Tensor,
    y: torch.Tensor,
    fcs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    precision: str,
    block_r: int,
    num_warps: int,
) -> tuple[Any, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The kernel for these settings and its arguments, after the checks it relies on."""
    if triton is None:
        raise RuntimeError("head_loss_triton needs Triton: install mlc[gpu]")
    sizes = [(w.shape[2], w.shape[1]) for w, _ in fcs]
    if not head_triton_available(h.device, sizes):
        raise ValueError(
            f"head_loss_triton takes {_N_LAYERS} Linear layers <= {_MAX_WIDTH} wide on a GPU, not {sizes}"
        )
    params = [t for pair in fcs for t in pair]
    if any(t.dtype != torch.float32 or t.device != h.device for t in (h, y, *params)):
        raise TypeError("head_loss_triton takes float32 tensors on one device")
    if h.dim() != 4:
        raise ValueError(f"h must be [M, L, B, H], got shape {tuple(h.shape)}")
    if h.shape[1] * h.shape[2] == 0:
        raise ValueError(f"no rows to average the loss over: h has shape {tuple(h.shape)}")
    check_precision(precision)
    if block_r < 16 or block_r & (block_r - 1) or num_warps not in (1, 2, 4, 8, 16):
        raise ValueError(
            f"block_r must be a power of two >= 16 and num_warps 1..16, got {block_r}, {num_warps}"
        )
    if h.stride(-1) != 1 or y.stride(-1) != 1:
        h, y = h.contiguous(), y.contiguous()
    if y.shape[:3] != h.shape[:3]:
        raise ValueError(f"targets {tuple(y.shape)} do not match the rows of h {tuple(h.shape)}")
    check_head(h.shape[0], h.shape[3], fcs, y)
    kernel = functools.partial(_run, tile=(block_r, num_warps), precision=precision)
    return kernel, h, y, params


if triton is not None:

    @triton.jit
    def _wt(w, sm, m, D_IN, D_OUT, P_IN: tl.constexpr, P_OUT: tl.constexpr, PRECISION: tl.constexpr):
        """W^T [P_IN, P_OUT] of model m (W is [D_OUT, D_IN], row-major), zero-padded, split (hi, lo)."""
        i = tl.arange(0, P_IN)[:, None]
        o = tl.arange(0, P_OUT)[None, :]
        return _split(tl.load(w + m * sm + o * D_IN + i, mask=(i < D_IN) & (o < D_OUT), other=0.0), PRECISION)

    @triton.jit
    def _layer(a, a_, wt, wt_, bias, PRECISION: tl.constexpr):
        """relu(a @ W^T + b) for a row tile a (split hi, lo), as (hi, lo)."""
        zero = tl.zeros([a.shape[0], wt.shape[1]], dtype=tl.float32)
        return _split(tl.maximum(_mm(a, a_, wt, wt_, zero, PRECISION) + bias, 0.0), PRECISION)

    @triton.jit
    def _backprop(a, a_, g, wt, wt_, gw, gb, PRECISION: tl.constexpr):
        """One Linear layer's backward for a row tile: input a (split hi, lo), output gradient g ->
        its weight and bias gradient accumulators updated, and the gradient g W into its input."""
        g_hi, g_lo = _split(g, PRECISION)
        gw = _accumulate(tl.trans(a), tl.trans(a_), g_hi, g_lo, gw, PRECISION)
        gb += tl.sum(g, axis=0)
        zero = tl.zeros([g.shape[0], wt.shape[0]], dtype=tl.float32)
        return gw, gb, _mm(g_hi, g_lo, tl.trans(wt), tl.trans(wt_), zero, PRECISION)

    @triton.jit
    def _bias(b, sm, m, D_OUT, P_OUT: tl.constexpr):
        o = tl.arange(0, P_OUT)
        return tl.load(b + m * sm + o, mask=o < D_OUT, other=0.0)[None, :]

    @triton.jit
    def _store_grad(dw, db, m, acc_w, acc_b, D_IN, D_OUT, P_IN: tl.constexpr, P_OUT: tl.constexpr):
        """dW [D_OUT, D_IN] from the accumulator of dW^T [P_IN, P_OUT]; db [D_OUT]."""
        i = tl.arange(0, P_IN)[:, None]
        o = tl.arange(0, P_OUT)[None, :]
        tl.store(dw + m * D_OUT * D_IN + o * D_IN + i, acc_w, mask=(i < D_IN) & (o < D_OUT))
        ob = tl.arange(0, P_OUT)
        tl.store(db + m * D_OUT + ob, acc_b, mask=ob < D_OUT)

    @triton.jit
    def _head_loss_kernel(
        h, y, w1, b1, w2, b2, w3, b3, w4, b4, sw1, sb1, sw2, sb2, sw3, sb3, sw4, sb4,
        loss, correct, dh, dw1, db1, dw2, db2, dw3, db3, dw4, db4,
        L, B, shm, shl, shb, sym, syl, syb, sdm, sdl, sdb, scale,
        D0, D1, D2, D3, D4,
        P0: tl.constexpr, P1: tl.constexpr, P2: tl.constexpr, P3: tl.constexpr, P4: tl.constexpr,
        BLOCK_R: tl.constexpr, WITH_GRADS: tl.constexpr, WITH_CORRECT: tl.constexpr,
        PRECISION: tl.constexpr,
    ):  # fmt: skip
        m = tl.program_id(0).to(tl.int64)
        # forward operands W_l^T [P_{l-1}, P_l]; their transposes serve the backward (g_l W_l)
        wt1, wt1_ = _wt(w1, sw1, m, D0, D1, P0, P1, PRECISION)
        wt2, wt2_ = _wt(w2, sw2, m, D1, D2, P1, P2, PRECISION)
        wt3, wt3_ = _wt(w3, sw3, m, D2, D3, P2, P3, PRECISION)
        wt4, wt4_ = _wt(w4, sw4, m, D3, D4, P3, P4, PRECISION)
        bias1 = _bias(b1, sb1, m, D1, P1)
        bias2 = _bias(b2, sb2, m, D2, P2)
        bias3 = _bias(b3, sb3, m, D3, P3)
        bias4 = _bias(b4, sb4, m, D4, P4)
        c0 = tl.arange(0, P0)[None, :]
        c4 = tl.arange(0, P4)[None, :]
        # accumulators of dW_l^T [P_{l-1}, P_l] and db_l [P_l]
        gw1 = tl.zeros([P0, P1], dtype=tl.float32)
        gw2 = tl.zeros([P1, P2], dtype=tl.float32)
        gw3 = tl.zeros([P2, P3], dtype=tl.float32)
        gw4 = tl.zeros([P3, P4], dtype=tl.float32)
        gb1 = tl.zeros([P1], dtype=tl.float32)
        gb2 = tl.zeros([P2], dtype=tl.float32)
        gb3 = tl.zeros([P3], dtype=tl.float32)
        gb4 = tl.zeros([P4], dtype=tl.float32)
        loss_acc = tl.zeros([BLOCK_R], dtype=tl.float32)
        correct_acc = tl.zeros([BLOCK_R], dtype=tl.float32)  # whole numbers: exact below 2^24
        for r0 in range(0, L * B, BLOCK_R):
            rows = r0 + tl.arange(0, BLOCK_R)
            valid_row = (rows < L * B)[:, None]
            t = (rows // B)[:, None].to(tl.int64)
            s = (rows % B)[:, None].to(tl.int64)
            x = tl.load(h + m * shm + t * shl + s * shb + c0, mask=valid_row & (c0 < D0), other=0.0)
            x, x_ = _split(x, PRECISION)
            a1, a1_ = _layer(x, x_, wt1, wt1_, bias1, PRECISION)
            a2, a2_ = _layer(a1, a1_, wt2, wt2_, bias2, PRECISION)
            a3, a3_ = _layer(a2, a2_, wt3, wt3_, bias3, PRECISION)
            z = _mm(a3, a3_, wt4, wt4_, tl.zeros([BLOCK_R, P4], dtype=tl.float32), PRECISION) + bias4
            valid = valid_row & (c4 < D4)
            target = tl.load(y + m * sym + t * syl + s * syb + c4, mask=valid, other=0.0)
            e = tl.exp(-tl.abs(z))
            bce = tl.maximum(z, 0.0) - z * target + tl.log(1.0 + e)
            loss_acc += tl.sum(tl.where(valid, bce, 0.0), axis=1)
            if WITH_CORRECT:
                correct_acc += tl.sum(tl.where(valid & ((z > 0) == (target > 0.5)), 1.0, 0.0), axis=1)
            if WITH_GRADS:
                sig = tl.where(z > 0, 1.0 / (1.0 + e), e / (1.0 + e))
                g4 = tl.where(valid, sig - target, 0.0) * scale
                # the split's hi part is > 0 where the activation is (but for denormals below 6e-42,
                # whose gradients vanish anyway), so it serves as the ReLU mask
                gw4, gb4, g3 = _backprop(a3, a3_, g4, wt4, wt4_, gw4, gb4, PRECISION)
                gw3, gb3, g2 = _backprop(a2, a2_, tl.where(a3 > 0, g3, 0.0), wt3, wt3_, gw3, gb3, PRECISION)
                gw2, gb2, g1 = _backprop(a1, a1_, tl.where(a2 > 0, g2, 0.0), wt2, wt2_, gw2, gb2, PRECISION)
                gw1, gb1, gx = _backprop(x, x_, tl.where(a1 > 0, g1, 0.0), wt1, wt1_, gw1, gb1, PRECISION)
                tl.store(dh + m * sdm + t * sdl + s * sdb + c0, gx, mask=valid_row & (c0 < D0))
        tl.store(loss + m, tl.sum(loss_acc, axis=0) * scale)
        if WITH_CORRECT:
            tl.store(correct + m, tl.sum(correct_acc, axis=0))
        if WITH_GRADS:
            _store_grad(dw1, db1, m, gw1, gb1, D0, D1, P0, P1)
            _store_grad(dw2, db2, m, gw2, gb2, D1, D2, P1, P2)
            _store_grad(dw3, db3, m, gw3, gb3, D2, D3, P2, P3)
            _store_grad(dw4, db4, m, gw4, gb4, D3, D4, P3, P4)
