"""The GRU recurrence for M networks as two fused Triton kernels (forward, backward), float32.

`gru_layer_triton` computes `gru_layer_torch` (same signature and PyTorch gate equations) but runs all
L time steps of one (model, batch chunk) in one Triton program, so the recurrent weights and the
hidden state stay on chip across steps, forward and in backpropagation through time.
`triton_available(device)` says whether the path can run on a device; elsewhere the population
trainer uses `gru_layer_manual` (time-major; wrap this batch-major layer with `from_batch_major`).

Design. Grid (M, ceil(B / BLOCK_B)); a program owns model m and BLOCK_B rows of its batch. H = 12 and
I = 5 or 12 are padded to 16 (tl.dot wants dimensions >= 16, powers of two) by masked loads; the
first spare column of x_t and h is set to 1 and the matching row of each transposed weight tile holds
the bias, so each product adds its bias and, in backward, dW's spare column accumulates db. Padded
hidden columns stay exactly 0 (r = z = 1/2, n = tanh(0) = 0) and padded batch rows get zero gradient,
so neither leaks. A step is six [BLOCK_B,16]x[16,16] products (x_t W_i*^T, h W_h*^T per gate) and the
gate arithmetic: the input projection is fused, no [M,B,L,3H] gate tensor exists, and the forward
writes only h [M,B,L,H]. Autograd saves x and h (x is the previous layer's h), 12 floats per model,
row, step and layer. The backward walks t = L-1..0, reloads h_{t-1} and x_t, recomputes the gates
with the forward's arithmetic, carries dh_t in registers, and per step does 3 products into dh_{t-1},
3 into dx_t (skipped when x needs no gradient: layer 0) and 6 rank-BLOCK_B updates dW_g += da_g^T
[v, 1] into register accumulators. Each program writes its own dW slice (no atomics); several batch
chunks per model are summed by one torch reduction. Step t-1's loads are issued before step t's math.

Numerics (`_triton_products`). precision="ieee" (default): tl.dot as float32 FMAs; only the
summation order differs from the reference, ~1e-7 relative. "tf32x3": three tf32 tensor-core
products per product, with the sums carried across steps (dW_g, dh) added on CUDA cores, since
the tensor cores' accumulation truncates. "tf32": one tensor-core product, ~7e-4, for measurement
only. Sigmoid uses ex2.approx and div.approx (2 ulp), tanh libdevice's; the interpreter
(TRITON_INTERPRET=1, read by Triton at import) has no libdevice and uses exp and 2*sigmoid(2x)-1.

Budget per model-step of the 4-layer stack (B=32, L=100): useful matrix work ~81 MFLOP (forward 20.5,
backward with the gate recompute ~61); executed with 16-padding it is 93 [32,16,16] products per
step, 152 MFLOP: 23 TFLOP/s of FP32 FMA at 150k model-steps/s, a third of an H100's 67. Memory
traffic is ~3.4 MB per model-step (x, h, dh, dx once per pass): 0.5 TB/s at 150k/s, so the kernels
are issue-bound. sm_90a builds (Triton 3.6, warp instructions per model and time step, default
tiles): ieee forward 2.9k + backward 7.3k; tf32x3 1.5k + 3.9k. At 9.2e11 warp instructions/s per
H100 (132 SMs x 4 schedulers x ~1.75 GHz) that bounds the GRU stack at ~225k (ieee) and ~430k
(tf32x3) model-steps/s. Saved h: 153.6 KB per model and layer, ~10 GB for the stack at 16,384.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mlc.models.triton._products import check_precision

try:  # the fused path is optional: without Triton the trainer uses gru_layer_manual
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice

    from mlc.models.triton._products import _accumulate, _finish, _mm, _split, _start
except ImportError:  # pragma: no cover - exercised on installs without the gpu extra
    triton = None

__all__ = ["gru_layer_triton", "triton_available"]

_MAX_PAD = 64  # beyond this the per-program register tiles spill; use gru_layer_manual instead


def triton_available(device: torch.device | str) -> bool:
    """Whether `gru_layer_triton` can run on `device`: Triton imported and the device is a CUDA GPU,
    or Triton's interpreter (TRITON_INTERPRET=1 when this module was imported) runs it on any device."""
    if triton is None:
        return False
    if _interpreted():
        return True
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.is_available()


def gru_layer_triton(
    x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor,
    *, precision: str = "ieee", block_b: int | tuple[int, int] | None = None,
    num_warps: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """One GRU layer for M networks from a zero initial state, fused (see the module docstring).

    x [M, B, L, I]; w_ih [M, 3H, I]; w_hh [M, 3H, H]; b_ih, b_hh [M, 3H]; all float32 on one device
    -> hidden states [M, B, L, H]. Differentiable in all five inputs. `precision` is the tl.dot mode
    ("ieee": float32 FMA; "tf32x3": three tf32 tensor-core products, float32-level error; "tf32":
    one, ~1e-3, for measurement only). `block_b` (batch rows per program, a power of two >= 16) and
    `num_warps` are tuning knobs, one value or a (forward, backward) pair; None picks the defaults.
    """
    if triton is None:
        raise RuntimeError("gru_layer_triton needs Triton: install mlc[gpu], or use gru_layer_manual")
    _check_operands(x, w_ih, w_hh, b_ih, b_hh)
    launch = _launch(precision, x.shape[1], block_b, num_warps)
    return _FusedGRULayer.apply(x, w_ih, w_hh, b_ih, b_hh, launch)


@dataclass(frozen=True)
class _Launch:
    """Kernel configuration: tl.dot precision and (block_b, num_warps, maxnreg) of each kernel."""

    precision: str
    fwd: tuple[int, int, int | None]
    bwd: tuple[int, int, int | None]


# (block_b, num_warps, maxnreg) of the forward and backward kernels at B >= 32, chosen from the
# instruction counts and registers of Triton 3.6 sm_90a builds (fewest instructions per model among
# tiles that leave >= 8 warps per SM); benchmarks/gru_kernel_check.py times the alternatives.
_DEFAULT_TILES = {
    "ieee": ((32, 2, None), (16, 2, None)),  # the fastest pair of the H200 sweep (benchmarks/NOTES.md)
    "tf32x3": ((32, 2, None), (32, 2, None)),
    "tf32": ((32, 2, None), (32, 2, None)),
}


def _interpreted() -> bool:
    return triton is not None and type(_gru_fwd_kernel).__name__ == "InterpretedFunction"


def _pad(n: int) -> int:
    """Padded width of a size-n operand: a power of two >= 16 with a spare column for the bias."""
    return max(16, triton.next_power_of_2(n + 1))


def _pair(value, default: tuple[int, int]) -> tuple[int, int]:
    if value is None:
        return default
    return (value, value) if isinstance(value, int) else tuple(value)


def _launch(precision: str, batch: int, block_b=None, num_warps=None) -> _Launch:
    check_precision(precision)
    tiles = _DEFAULT_TILES[precision]
    if batch <= 16 and block_b is None:  # one 16-row tile, with half the warps of a 32-row one
        tiles = tuple((16, max(1, w // 2), None) if bb > 16 else (bb, w, r) for bb, w, r in tiles)
    if block_b is None and num_warps is None:
        return _Launch(precision, *tiles)
    blocks = _pair(block_b, (tiles[0][0], tiles[1][0]))
    warps = _pair(num_warps, (tiles[0][1], tiles[1][1]))
    if any(bb < 16 or bb & (bb - 1) for bb in blocks):
        raise ValueError(f"block_b must be a power of two >= 16, got {block_b}")
    if any(nw not in (1, 2, 4, 8, 16) for nw in warps):
        raise ValueError(f"num_warps must be 1, 2, 4, 8 or 16, got {num_warps}")
    # An explicit tile drops the defaults' register caps, which were sized for their own tiles.
    return _Launch(precision, (blocks[0], warps[0], None), (blocks[1], warps[1], None))


def _check_operands(x, w_ih, w_hh, b_ih, b_hh) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be [M, B, L, I], got shape {tuple(x.shape)}")
    m, _, _, n_in = x.shape
    hidden = w_hh.shape[-1]
    expected = {
        "w_ih": (w_ih, (m, 3 * hidden, n_in)), "w_hh": (w_hh, (m, 3 * hidden, hidden)),
        "b_ih": (b_ih, (m, 3 * hidden)), "b_hh": (b_hh, (m, 3 * hidden)),
    }
    for name, (t, shape) in expected.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must be {shape} for x {tuple(x.shape)}, got {tuple(t.shape)}")
    for t in (x, w_ih, w_hh, b_ih, b_hh):
        if t.dtype != torch.float32 or t.device != x.device:
            raise TypeError(
                f"gru_layer_triton takes float32 tensors on one device, got {t.dtype} on {t.device}; "
                "use gru_layer_manual for other dtypes"
            )
    if _pad(hidden) > _MAX_PAD or _pad(n_in) > _MAX_PAD:
        raise ValueError(f"the fused GRU takes hidden and input sizes below {_MAX_PAD}; "
                         "use gru_layer_manual for larger ones")


class _FusedGRULayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, launch):
        h = _forward(x, w_ih, w_hh, b_ih, b_hh, launch)
        ctx.save_for_backward(x, w_ih, w_hh, b_ih, b_hh, h)
        ctx.launch = launch
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh):
        x, w_ih, w_hh, b_ih, b_hh, h = ctx.saved_tensors
        grads = _backward(x, w_ih, w_hh, b_ih, b_hh, h, dh, ctx.launch, ctx.needs_input_grad[0])
        return (*grads, None)


def _inner_rowmajor(t: torch.Tensor) -> torch.Tensor:
    """`t` if every dim but the first is dense row-major (views into the flat [M, P] matrix are),
    else a contiguous copy; the kernels then take only the leading stride."""
    dense = 1
    for size, stride in zip(reversed(t.shape[1:]), reversed(t.stride()[1:]), strict=True):
        if size != 1 and stride != dense:
            return t.contiguous()
        dense *= size
    return t


def _weights(w_ih, w_hh, b_ih, b_hh):
    """The four weight tensors as the kernels read them, then their leading strides."""
    ws = [_inner_rowmajor(t) for t in (w_ih, w_hh, b_ih, b_hh)]
    return (*ws, *(t.stride(0) for t in ws))


def _options(num_warps: int, maxnreg: int | None) -> dict:
    """Launch options; FMA fusion named explicitly (Triton 3.9 warns when it is left implicit)."""
    options = {"num_warps": num_warps, "num_stages": 1, "enable_fp_fusion": True}
    if maxnreg is not None:
        options["maxnreg"] = maxnreg
    return options


def _forward(x, w_ih, w_hh, b_ih, b_hh, launch: _Launch) -> torch.Tensor:
    m, b, length, n_in = x.shape
    hidden = w_hh.shape[-1]
    h = torch.empty(m, b, length, hidden, device=x.device, dtype=torch.float32)
    if h.numel() == 0:
        return h
    block_b, num_warps, maxnreg = launch.fwd
    _gru_fwd_kernel[(m, triton.cdiv(b, block_b))](
        x, *_weights(w_ih, w_hh, b_ih, b_hh), h,
        b, length, n_in, hidden, *x.stride(), *h.stride()[:3],
        BLOCK_B=block_b, IP=_pad(n_in), HP=_pad(hidden), PRECISION=launch.precision,
        USE_LIBDEVICE=not _interpreted(), **_options(num_warps, maxnreg),
    )
    return h


def _backward(x, w_ih, w_hh, b_ih, b_hh, h, dh, launch: _Launch, need_dx: bool):
    m, b, length, n_in = x.shape
    hidden = w_hh.shape[-1]
    block_b, num_warps, maxnreg = launch.bwd
    chunks = triton.cdiv(b, block_b)
    if dh.stride(-1) != 1:
        dh = dh.contiguous()
    dx = torch.empty_like(x, memory_format=torch.contiguous_format) if need_dx else None
    f32 = {"device": x.device, "dtype": torch.float32}
    dw_ih = torch.empty(m, chunks, 3 * hidden, n_in, **f32)
    dw_hh = torch.empty(m, chunks, 3 * hidden, hidden, **f32)
    db_ih = torch.empty(m, chunks, 3 * hidden, **f32)
    db_hh = torch.empty(m, chunks, 3 * hidden, **f32)
    if m and b and length:
        _gru_bwd_kernel[(m, chunks)](
            x, *_weights(w_ih, w_hh, b_ih, b_hh), h, dh,
            x if dx is None else dx, dw_ih, dw_hh, db_ih, db_hh,
            b, length, n_in, hidden, *x.stride(), *h.stride()[:3], *dh.stride()[:3],
            BLOCK_B=block_b, IP=_pad(n_in), HP=_pad(hidden), PRECISION=launch.precision,
            USE_LIBDEVICE=not _interpreted(), NEED_DX=need_dx, **_options(num_warps, maxnreg),
        )
    else:  # nothing to backpropagate through: every gradient is zero
        for t in (dx, dw_ih, dw_hh, db_ih, db_hh):
            if t is not None:
                t.zero_()
    # Each (model, chunk) program wrote its own slice; one chunk is already the gradient.
    dw_ih, dw_hh, db_ih, db_hh = (t[:, 0] if chunks == 1 else t.sum(1) for t in (dw_ih, dw_hh, db_ih, db_hh))
    return dx, dw_ih, dw_hh, db_ih, db_hh


if triton is not None:

    @triton.jit
    def _sigmoid(v, USE_LIBDEVICE: tl.constexpr):
        if USE_LIBDEVICE:  # ex2.approx + div.approx: 2 ulp each, a quarter of the instructions of `/`
            out = libdevice.fast_dividef(1.0, 1.0 + libdevice.fast_expf(-v))
        else:  # the interpreter has no libdevice
            out = 1.0 / (1.0 + tl.exp(-v))
        return out

    @triton.jit
    def _tanh(v, USE_LIBDEVICE: tl.constexpr):
        if USE_LIBDEVICE:  # noqa: SIM108 - a static branch of the Triton frontend
            out = libdevice.tanh(v)
        else:
            out = 2.0 * _sigmoid(2.0 * v, USE_LIBDEVICE) - 1.0
        return out

    @triton.jit
    def _load_wt(w, bias, gate, H, C, CP: tl.constexpr, HP: tl.constexpr, PRECISION: tl.constexpr):
        """[W_g^T; b_g] of one model, zero-padded to [CP, HP] and split (hi, lo): rows 0..C-1 are
        W_g [H, C] transposed (row stride C), row C is the bias, so that [v, 1] @ tile = v W_g^T + b_g."""
        k = tl.arange(0, CP)[:, None]
        n = tl.arange(0, HP)[None, :]
        tile = tl.load(w + (gate * H + n) * C + k, mask=(k < C) & (n < H), other=0.0)
        tile += tl.load(bias + gate * H + n + k * 0, mask=(k == C) & (n < H), other=0.0)
        return _split(tile, PRECISION)

    @triton.jit
    def _load_w(w, gate, H, C, HP: tl.constexpr, CP: tl.constexpr, PRECISION: tl.constexpr):
        """W_g [H, C] (row stride C) of one model, zero-padded to [HP, CP], split (hi, lo)."""
        k = tl.arange(0, HP)[:, None]
        n = tl.arange(0, CP)[None, :]
        return _split(tl.load(w + (gate * H + k) * C + n, mask=(k < H) & (n < C), other=0.0), PRECISION)

    @triton.jit
    def _gates(x_hi, x_lo, h_hi, h_lo, wir, wir_, wiz, wiz_, win, win_, whr, whr_, whz, whz_, whn, whn_,
               PRECISION: tl.constexpr, USE_LIBDEVICE: tl.constexpr):
        """One step's gates r, z, n [BB, HP] and W_hn h + b_hn from [x_t, 1] [BB, IP] and [h_{t-1}, 1]
        [BB, HP] (each split hi, lo) and the bias-augmented transposed tiles (w, w_ = hi, lo)."""
        zero = tl.zeros([x_hi.shape[0], whr.shape[1]], dtype=tl.float32)
        a_r = _mm(h_hi, h_lo, whr, whr_, _mm(x_hi, x_lo, wir, wir_, zero, PRECISION), PRECISION)
        a_z = _mm(h_hi, h_lo, whz, whz_, _mm(x_hi, x_lo, wiz, wiz_, zero, PRECISION), PRECISION)
        g_in = _mm(x_hi, x_lo, win, win_, zero, PRECISION)
        g_hn = _mm(h_hi, h_lo, whn, whn_, zero, PRECISION)
        r = _sigmoid(a_r, USE_LIBDEVICE)
        z = _sigmoid(a_z, USE_LIBDEVICE)
        n = _tanh(g_in + r * g_hn, USE_LIBDEVICE)
        return r, z, n, g_hn

    @triton.jit
    def _gru_fwd_kernel(
        x, w_ih, w_hh, b_ih, b_hh, swim, swhm, sbim, sbhm, h_out,
        B, L, IN, H, sxm, sxb, sxl, sxi, shm, shb, shl,
        BLOCK_B: tl.constexpr, IP: tl.constexpr, HP: tl.constexpr, PRECISION: tl.constexpr,
        USE_LIBDEVICE: tl.constexpr,
    ):
        m = tl.program_id(0).to(tl.int64)
        rows = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
        ci = tl.arange(0, IP)
        ch = tl.arange(0, HP)
        x_mask = (rows < B)[:, None] & (ci < IN)[None, :]
        h_mask = (rows < B)[:, None] & (ch < H)[None, :]
        x_one = (ci == IN)[None, :]  # the constant-1 column that multiplies the bias row
        h_one = (ch == H)[None, :]
        x_ptr = x + m * sxm + rows[:, None] * sxb + ci[None, :] * sxi  # [BB, IP] at t = 0
        h_ptr = h_out + m * shm + rows[:, None] * shb + ch[None, :]  # [BB, HP] at t = 0
        w_i = w_ih + m * swim
        w_h = w_hh + m * swhm
        bi = b_ih + m * sbim
        bh = b_hh + m * sbhm
        wir, wir_ = _load_wt(w_i, bi, 0, H, IN, IP, HP, PRECISION)  # [IP, HP]
        wiz, wiz_ = _load_wt(w_i, bi, 1, H, IN, IP, HP, PRECISION)
        win, win_ = _load_wt(w_i, bi, 2, H, IN, IP, HP, PRECISION)
        whr, whr_ = _load_wt(w_h, bh, 0, H, H, HP, HP, PRECISION)  # [HP, HP]
        whz, whz_ = _load_wt(w_h, bh, 1, H, H, HP, HP, PRECISION)
        whn, whn_ = _load_wt(w_h, bh, 2, H, H, HP, HP, PRECISION)

        h = tl.zeros([BLOCK_B, HP], dtype=tl.float32)  # padded columns stay 0
        x_t = tl.load(x_ptr, mask=x_mask, other=0.0)
        for t in range(L):
            # Prefetch step t+1 (clamped: the last step re-reads its own x, unused).
            x_next = tl.load(x_ptr + tl.minimum(t + 1, L - 1) * sxl, mask=x_mask, other=0.0)
            x_hi, x_lo = _split(tl.where(x_one, 1.0, x_t), PRECISION)
            h_hi, h_lo = _split(tl.where(h_one, 1.0, h), PRECISION)
            r, z, n, g_hn = _gates(x_hi, x_lo, h_hi, h_lo, wir, wir_, wiz, wiz_, win, win_,
                                   whr, whr_, whz, whz_, whn, whn_, PRECISION, USE_LIBDEVICE)
            h = n + z * (h - n)  # [BB, HP]
            tl.store(h_ptr + t * shl, h, mask=h_mask)
            x_t = x_next

    @triton.jit
    def _gru_bwd_kernel(
        x, w_ih, w_hh, b_ih, b_hh, swim, swhm, sbim, sbhm, h_out, dh_out,
        dx, dw_ih, dw_hh, db_ih, db_hh,
        B, L, IN, H, sxm, sxb, sxl, sxi, shm, shb, shl, sgm, sgb, sgl,
        BLOCK_B: tl.constexpr, IP: tl.constexpr, HP: tl.constexpr, PRECISION: tl.constexpr,
        USE_LIBDEVICE: tl.constexpr, NEED_DX: tl.constexpr,
    ):
        m = tl.program_id(0).to(tl.int64)
        chunk = tl.program_id(1)
        rows = chunk * BLOCK_B + tl.arange(0, BLOCK_B)
        ci = tl.arange(0, IP)
        ch = tl.arange(0, HP)
        x_mask = (rows < B)[:, None] & (ci < IN)[None, :]
        h_mask = (rows < B)[:, None] & (ch < H)[None, :]
        x_one = (ci == IN)[None, :]
        h_one = (ch == H)[None, :]
        x_ptr = x + m * sxm + rows[:, None] * sxb + ci[None, :] * sxi
        h_ptr = h_out + m * shm + rows[:, None] * shb + ch[None, :]
        g_ptr = dh_out + m * sgm + rows[:, None] * sgb + ch[None, :]
        dx_ptr = dx + m * B * L * IN + rows[:, None] * (L * IN) + ci[None, :]  # dx is contiguous
        w_i = w_ih + m * swim
        w_h = w_hh + m * swhm
        bi = b_ih + m * sbim
        bh = b_hh + m * sbhm
        wir, wir_ = _load_wt(w_i, bi, 0, H, IN, IP, HP, PRECISION)  # transposed: recompute the gates
        wiz, wiz_ = _load_wt(w_i, bi, 1, H, IN, IP, HP, PRECISION)
        win, win_ = _load_wt(w_i, bi, 2, H, IN, IP, HP, PRECISION)
        whr, whr_ = _load_wt(w_h, bh, 0, H, H, HP, HP, PRECISION)
        whz, whz_ = _load_wt(w_h, bh, 1, H, H, HP, HP, PRECISION)
        whn, whn_ = _load_wt(w_h, bh, 2, H, H, HP, HP, PRECISION)
        uhr, uhr_ = _load_w(w_h, 0, H, H, HP, HP, PRECISION)  # as stored: backpropagate into h
        uhz, uhz_ = _load_w(w_h, 1, H, H, HP, HP, PRECISION)
        uhn, uhn_ = _load_w(w_h, 2, H, H, HP, HP, PRECISION)
        uir, uir_ = _load_w(w_i, 0, H, IN, HP, IP, PRECISION)  # as stored: backpropagate into x
        uiz, uiz_ = _load_w(w_i, 1, H, IN, HP, IP, PRECISION)
        uin, uin_ = _load_w(w_i, 2, H, IN, HP, IP, PRECISION)

        dh = tl.zeros([BLOCK_B, HP], dtype=tl.float32)  # dLoss/dh_t through later steps
        # dW_g accumulates da_g^T @ [v, 1]: its column C (the constant 1) is the bias gradient.
        dw_ir = tl.zeros([HP, IP], dtype=tl.float32)
        dw_iz = tl.zeros([HP, IP], dtype=tl.float32)
        dw_in = tl.zeros([HP, IP], dtype=tl.float32)
        dw_hr = tl.zeros([HP, HP], dtype=tl.float32)
        dw_hz = tl.zeros([HP, HP], dtype=tl.float32)
        dw_hn = tl.zeros([HP, HP], dtype=tl.float32)

        last = L - 1
        x_t = tl.load(x_ptr + last * sxl, mask=x_mask, other=0.0)
        h_prev = tl.load(h_ptr + tl.maximum(last - 1, 0) * shl, mask=h_mask, other=0.0)
        h_prev = tl.where(last >= 1, h_prev, 0.0)  # h_{-1} = 0
        g_t = tl.load(g_ptr + last * sgl, mask=h_mask, other=0.0)
        for step in range(L):
            t = last - step
            # Prefetch step t-1 (clamped: at t = 0 the values are loaded but unused).
            x_next = tl.load(x_ptr + tl.maximum(t - 1, 0) * sxl, mask=x_mask, other=0.0)
            h_next = tl.load(h_ptr + tl.maximum(t - 2, 0) * shl, mask=h_mask, other=0.0)
            g_next = tl.load(g_ptr + tl.maximum(t - 1, 0) * sgl, mask=h_mask, other=0.0)
            x_hi, x_lo = _split(tl.where(x_one, 1.0, x_t), PRECISION)
            h_hi, h_lo = _split(tl.where(h_one, 1.0, h_prev), PRECISION)
            r, z, n, g_hn = _gates(x_hi, x_lo, h_hi, h_lo, wir, wir_, wiz, wiz_, win, win_,
                                   whr, whr_, whz, whz_, whn, whn_, PRECISION, USE_LIBDEVICE)
            dh = dh + g_t  # [BB, HP] total gradient of h_t
            da_n = dh * (1.0 - z) * (1.0 - n * n)  # through n = tanh(g_in + r * g_hn)
            d_ghn = da_n * r
            da_r = da_n * g_hn * r * (1.0 - r)
            da_z = dh * (h_prev - n) * z * (1.0 - z)
            dr_hi, dr_lo = _split(da_r, PRECISION)
            dz_hi, dz_lo = _split(da_z, PRECISION)
            dn_hi, dn_lo = _split(da_n, PRECISION)
            dg_hi, dg_lo = _split(d_ghn, PRECISION)
            # Weight gradients: dW_g += da_g^T @ [v, 1], a K = BLOCK_B product per gate.
            dw_ir = _accumulate(tl.trans(dr_hi), tl.trans(dr_lo), x_hi, x_lo, dw_ir, PRECISION)
            dw_iz = _accumulate(tl.trans(dz_hi), tl.trans(dz_lo), x_hi, x_lo, dw_iz, PRECISION)
            dw_in = _accumulate(tl.trans(dn_hi), tl.trans(dn_lo), x_hi, x_lo, dw_in, PRECISION)
            dw_hr = _accumulate(tl.trans(dr_hi), tl.trans(dr_lo), h_hi, h_lo, dw_hr, PRECISION)
            dw_hz = _accumulate(tl.trans(dz_hi), tl.trans(dz_lo), h_hi, h_lo, dw_hz, PRECISION)
            dw_hn = _accumulate(tl.trans(dg_hi), tl.trans(dg_lo), h_hi, h_lo, dw_hn, PRECISION)
            if NEED_DX:
                d_x = _mm(dr_hi, dr_lo, uir, uir_, tl.zeros([BLOCK_B, IP], dtype=tl.float32), PRECISION)
                d_x = _mm(dz_hi, dz_lo, uiz, uiz_, d_x, PRECISION)
                d_x = _mm(dn_hi, dn_lo, uin, uin_, d_x, PRECISION)  # [BB, IP]
                tl.store(dx_ptr + t * IN, d_x, mask=x_mask)
            carry = dh * z  # [BB, HP] into h_{t-1}: directly, and through the three gates
            d_h = _mm(dr_hi, dr_lo, uhr, uhr_, _start(carry, PRECISION), PRECISION)
            d_h = _mm(dz_hi, dz_lo, uhz, uhz_, d_h, PRECISION)
            dh = _finish(_mm(dg_hi, dg_lo, uhn, uhn_, d_h, PRECISION), carry, PRECISION)
            x_t = x_next
            h_prev = tl.where(t >= 2, h_next, 0.0)
            g_t = g_next

        # This program's slice of the gradients: [M, chunks, 3H, C] and [M, chunks, 3H] at (m, chunk).
        slot = m * tl.num_programs(1) + chunk
        k = tl.arange(0, HP)[:, None]
        wi_mask = (k < H) & (ci[None, :] < IN)
        wh_mask = (k < H) & (ch[None, :] < H)
        dwi = dw_ih + slot * 3 * H * IN + k * IN + ci[None, :]
        dwh = dw_hh + slot * 3 * H * H + k * H + ch[None, :]
        tl.store(dwi, dw_ir, mask=wi_mask)
        tl.store(dwi + H * IN, dw_iz, mask=wi_mask)
        tl.store(dwi + 2 * H * IN, dw_in, mask=wi_mask)
        tl.store(dwh, dw_hr, mask=wh_mask)
        tl.store(dwh + H * H, dw_hz, mask=wh_mask)
        tl.store(dwh + 2 * H * H, dw_hn, mask=wh_mask)
        j = tl.arange(0, HP)
        dbi = db_ih + slot * 3 * H + j
        dbh = db_hh + slot * 3 * H + j
        tl.store(dbi, tl.sum(tl.where(x_one, dw_ir, 0.0), axis=1), mask=j < H)
        tl.store(dbi + H, tl.sum(tl.where(x_one, dw_iz, 0.0), axis=1), mask=j < H)
        tl.store(dbi + 2 * H, tl.sum(tl.where(x_one, dw_in, 0.0), axis=1), mask=j < H)
        tl.store(dbh, tl.sum(tl.where(h_one, dw_hr, 0.0), axis=1), mask=j < H)
        tl.store(dbh + H, tl.sum(tl.where(h_one, dw_hz, 0.0), axis=1), mask=j < H)
        tl.store(dbh + 2 * H, tl.sum(tl.where(h_one, dw_hn, 0.0), axis=1), mask=j < H)
