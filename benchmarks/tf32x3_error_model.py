"""Why the fused GRU backward's tf32x3 weight gradients missed float32 accuracy: a numpy error model.

On an H200 the tf32x3 path of `src/mlc/models/_gru_triton.py`, summing the weight gradients through
the tensor cores' accumulator across all steps, gave norm-relative errors against float64 of ~2e-5 at
B=32 rows, L=100 steps and ~3e-6 at B=20 rows in 16-row tiles, L=30, growing about linearly with the
number of accumulations, while the ieee path stayed at ~7e-7 (benchmarks/results/h200_gru_kernel_sweep.txt).
The hypothesis: tensor cores do not accumulate as IEEE float32. Following Fasi, Higham, Mikaitis and
Pranesh, "Numerical behavior of NVIDIA tensor cores" (PeerJ Comput. Sci. 7:e330, 2021) and Khattak
and Mikaitis, "Accurate models of NVIDIA tensor cores" (arXiv:2512.07004, 2025), one mma adds k exact
products of tf32 operands to the accumulator c: every addend is aligned to the largest exponent among
them and c, keeping 24 + `extra` bits below it (the rest truncated toward zero), the aligned values are
summed exactly, and the sum is normalised to float32 rounding toward zero.

The script computes one GRU layer's exact gate gradients (da_r, da_z, da_n, d(W_hn h + b_hn)) per step
in float64 (a numpy BPTT, asserted against torch float64 autograd once), and accumulates
dW_g = sum_t da_g,t^T [v_t, 1] (column C: the bias gradient) from their float32 values under:
  ieee     sequential float32 FMAs, round to nearest (the kernel's ieee path; 16-row tiles at B=32, as
           measured with the ieee default tile);
  carried  tf32x3 (lo.hi, hi.lo, hi.hi; block_b / k mma's each) into the accumulator carried across
           all steps, through the tensor-core model: the kernel as measured;
  fixed    tf32x3 from a zero accumulator per step, through the tensor-core model, then an IEEE float32
           add into the carried sum: the fix (`src/mlc/models/_triton_products.py`).
Table 1 accumulates exact gate gradients: the accumulation error alone. Table 2 also emulates the dh
carry (dh_{t-1} = dh z + sum_g da_g W_hg, accumulated into dh z, or from zero then added for the fix)
and dx (from zero), with one float32 rounding per gate-gradient expression; the measured numbers also
hold the float32 gate recompute (approximate sigmoid and tanh), which neither table models. Errors:
norm-relative per model (weights: the larger of w_ih, w_hh; biases: of b_ih, b_hh), median and max
over models; the H200 column (I=12 rows of the sweep, 64 models pooled) stands next to the ieee row
and the best-fitting tensor-core row.

Tensor-core variants, named "k<products per mma> +<extra alignment bits> <final rounding>": "exact"
keeps all alignment bits; "k8 +0 RZ" is the hypothesis as first stated, "k8 exact RN" a float32
accumulator that rounds to nearest (reordered, not biased), and "k8 +3 RN" truncates the alignment
but rounds the normalisation, to show which truncation carries the error.

Result (seed 0, 8 models): the measured weight, bias and dx errors of both cases, and their ratio,
are reproduced only when the normalisation rounds toward zero and the alignment keeps bits below the
accumulator's ulp for it to drop (k8 +2 or +3, k4 +1: ~0.5 ulp lost toward zero per mma, a bias
linear in the number of mma's). With +0 the aligned sum is already on the ulp grid and the error is
a random walk, 7x too small; with round to nearest the carried sum is as good as ieee. Under every
variant the fix gives 1.5e-7..3.4e-7, at or below the ieee path. The kernel tests run the kernels
themselves on "k8 +3 RZ" tensor cores in Triton's interpreter (tests/models/tensor_cores.py).

    .venv/bin/python benchmarks/tf32x3_error_model.py                 # 8 models per case, ~30 s on 2 cores
    .venv/bin/python benchmarks/tf32x3_error_model.py --models 16 --seed 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

HIDDEN = 12
INPUT = 12
PAD = 16  # the kernel's padded width: the K of the dh and dx products
F32_BITS = 24  # significand bits of float32, the accumulator's format
TF32_MASK = np.uint32(0xFFFFE000)  # sign, exponent and the top 10 explicit mantissa bits

Array = np.ndarray


@dataclass(frozen=True)
class Case:
    """A correctness check of benchmarks/gru_kernel_check.py (I = 12) and what the H200 measured there."""

    name: str
    batch: int
    length: int
    block_b: int  # tf32x3 rows per program: B is split into ceil(B / block_b) zero-padded tiles
    ieee_block_b: int
    measured: dict[str, tuple[float, float, float]]  # scheme -> (weight, bias, dx) relative error


CASES = (
    Case("B32 L100", 32, 100, 32, 16,
         {"ieee": (7.4e-7, 7.3e-7, 2.0e-7), "carried": (2.3e-5, 1.0e-5, 8.0e-7)}),
    Case("B20 L30", 20, 30, 16, 16,
         {"ieee": (4.1e-7, 3.9e-7, 1.9e-7), "carried": (3.4e-6, 1.8e-6, 7.8e-7)}),
)


@dataclass(frozen=True)
class TensorCore:
    """One mma: `k` exact products added to c; addends aligned to the largest exponent keeping
    F32_BITS + `extra` bits (None: all), truncated toward zero; the exact sum normalised to float32
    rounding toward zero (`final` "RZ") or to nearest ("RN")."""

    k: int
    extra: int | None
    final: str

    @property
    def name(self) -> str:
        return f"k{self.k} {'exact' if self.extra is None else f'+{self.extra}'} {self.final}"


TENSOR_CORES = (
    TensorCore(8, 0, "RZ"), TensorCore(8, 1, "RZ"), TensorCore(8, 2, "RZ"), TensorCore(8, 3, "RZ"),
    TensorCore(8, None, "RZ"), TensorCore(4, 0, "RZ"), TensorCore(4, 1, "RZ"), TensorCore(8, 3, "RN"),
    TensorCore(8, None, "RN"),
)
CARRY_TENSOR_CORES = (TensorCore(8, 0, "RZ"), TensorCore(8, 3, "RZ"), TensorCore(8, None, "RN"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", type=int, default=8, help="random models per case")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    started = time.perf_counter()
    _check_bptt(np.random.default_rng([args.seed, 1]))
    print(f"numpy BPTT matches torch float64 autograd; {args.models} models per case, seed {args.seed}")
    data = {case.name: _case_data(np.random.default_rng([args.seed, case.batch, case.length]), case,
                                  args.models) for case in CASES}
    print("\nTable 1: accumulation of exact gate gradients (relative error vs float64)")
    _header(with_dx=False)
    for case in CASES:
        d = data[case.name]
        ieee = _tiles(d["a"], d["v"], case.ieee_block_b)
        _row(case, "ieee", None, _errors(d, _accumulate(*ieee, case.ieee_block_b, "ieee", None)))
        tf32x3 = _tiles(d["a"], d["v"], case.block_b)
        for tc in TENSOR_CORES:
            for scheme in ("carried", "fixed"):
                _row(case, scheme, tc, _errors(d, _accumulate(*tf32x3, case.block_b, scheme, tc)))
    print("\nTable 2: the dh carry and dx emulated too, each product in the same scheme")
    _header(with_dx=True)
    for case in CASES:
        d = data[case.name]
        runs = [("ieee", None)] + [(s, tc) for tc in CARRY_TENSOR_CORES for s in ("carried", "fixed")]
        for scheme, tc in runs:
            da, dx = _backward(d["saved"], d["grad"], d["w_ih"], d["w_hh"], scheme, tc)
            a, v = _gate_operands(da, d["x"], d["saved"][:, :, 0])
            block_b = case.ieee_block_b if scheme == "ieee" else case.block_b
            dw = _accumulate(*_tiles(a, v, block_b), block_b, scheme, tc)
            _row(case, scheme, tc, _errors(d, dw), _rel_per_model(dx, d["dx"]))
    print(f"\nwall time {time.perf_counter() - started:.1f} s")


def _header(*, with_dx: bool) -> None:
    line = f"{'case':<9} {'scheme':<8} {'tensor core':<12} {'weight med':>10} {'max':>8} " \
           f"{'bias med':>9} {'max':>8}" + (f" {'dx med':>8} {'max':>8}" if with_dx else "") + \
           f"   {'H200 weight':>11} {'bias':>8}" + (f" {'dx':>8}" if with_dx else "")
    print(line)
    print("-" * len(line))


def _row(case: Case, scheme: str, tc: TensorCore | None, err: tuple[list[float], list[float]],
         dx_err: list[float] | None = None) -> None:
    cols = [err[0], err[1]] + ([dx_err] if dx_err is not None else [])
    text = f"{case.name:<9} {scheme:<8} {tc.name if tc else '-':<12} " + " ".join(
        f"{statistics.median(c):>{10 if i == 0 else 9 if i == 1 else 8}.1e} {max(c):>8.1e}"
        for i, c in enumerate(cols))
    measured = case.measured.get(scheme)
    if measured and (tc is None or tc == TensorCore(8, 3, "RZ")):  # next to the ieee and best-fit rows
        text += f"   {measured[0]:>11.1e} {measured[1]:>8.1e}"
        if dx_err is not None:
            text += f" {measured[2]:>8.1e}"
    print(text, flush=True)


# ---------------------------------------------------------------- data and exact gradients


def _f32(u: Array) -> Array:
    """u rounded to float32 (to nearest), held in float64."""
    return u.astype(np.float32).astype(np.float64)


def _layer(rng: np.random.Generator, m: int, batch: int, length: int) -> list[Array]:
    """x, w_ih, w_hh, b_ih, b_hh and the upstream gradient of m models as float32 values, drawn like
    gru_kernel_check._layer_inputs: x, grad ~ N(0, 1), weights and biases uniform ±2/sqrt(H)."""
    s = 2.0 / np.sqrt(HIDDEN)
    return [_f32(rng.standard_normal((m, batch, length, INPUT))),
            _f32(rng.uniform(-s, s, (m, 3 * HIDDEN, INPUT))),
            _f32(rng.uniform(-s, s, (m, 3 * HIDDEN, HIDDEN))),
            _f32(rng.uniform(-s, s, (m, 3 * HIDDEN))), _f32(rng.uniform(-s, s, (m, 3 * HIDDEN))),
            _f32(rng.standard_normal((m, batch, length, HIDDEN)))]


def _forward(x: Array, w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array) -> Array:
    """Exact forward of one GRU layer from h = 0, PyTorch's gate equations: x [M, B, L, I], w_ih [M, 3H, I],
    w_hh [M, 3H, H], b_ih, b_hh [M, 3H] -> (h_{t-1}, r, z, n, W_hn h_{t-1} + b_hn) [M, L, 5, B, H]."""
    m, b, length, _ = x.shape
    gi = np.einsum("mbli,mgi->mblg", x, w_ih) + b_ih[:, None, None, :]
    h = np.zeros((m, b, HIDDEN))
    saved = []
    for t in range(length):
        gh = np.einsum("mbh,mgh->mbg", h, w_hh) + b_hh[:, None, :]
        i_r, i_z, i_n = np.split(gi[:, :, t], 3, axis=-1)
        h_r, h_z, h_n = np.split(gh, 3, axis=-1)
        r = 1 / (1 + np.exp(-(i_r + h_r)))
        z = 1 / (1 + np.exp(-(i_z + h_z)))
        n = np.tanh(i_n + r * h_n)
        saved.append(np.stack([h, r, z, n, h_n], axis=1))
        h = n + z * (h - n)
    return np.stack(saved, axis=1)


def _backward(saved: Array, grad: Array, w_ih: Array, w_hh: Array, scheme: str,
              tc: TensorCore | None) -> tuple[Array, Array]:
    """BPTT as the kernel walks it, t = L-1..0 -> gate gradients da [M, L, B, 4, H] (d a_r, d a_z,
    d a_n, d(W_hn h + b_hn)) and dx [M, L, B, I]. scheme "exact": float64 throughout; otherwise each
    gate-gradient expression is rounded to float32 once and the dh and dx products run in `scheme`."""
    exact = scheme == "exact"
    rnd = (lambda u: u) if exact else _f32
    m, length, _, b, _ = saved.shape
    da = np.zeros((m, length, b, 4, HIDDEN))
    dx = np.zeros((m, length, b, INPUT))
    u_h = np.split(w_hh, 3, axis=1)  # W_hg [M, H, H] as stored: rows are the K of da_g W_hg
    u_i = np.split(w_ih, 3, axis=1)
    dh = np.zeros((m, b, HIDDEN))
    for t in reversed(range(length)):
        hp, r, z, n, hn = (rnd(u) for u in np.moveaxis(saved[:, t], 1, 0))
        dh = rnd(dh + grad[:, :, t])
        da_n = rnd(dh * (1 - z) * (1 - n * n))
        d_ghn = rnd(da_n * r)
        da_r = rnd(da_n * hn * r * (1 - r))
        da_z = rnd(dh * (hp - n) * z * (1 - z))
        da[:, t] = np.stack([da_r, da_z, da_n, d_ghn], axis=2)
        dx[:, t] = _row_products(np.zeros((m, b, INPUT)), [(da_r, u_i[0]), (da_z, u_i[1]), (da_n, u_i[2])],
                                 scheme, tc, from_zero=True)
        dh = _row_products(rnd(dh * z), [(da_r, u_h[0]), (da_z, u_h[1]), (d_ghn, u_h[2])], scheme, tc)
    return da, dx


def _gate_operands(da: Array, x: Array, h_prev: Array) -> tuple[Array, Array]:
    """The six dW accumulators' operands per step: A [M, L, 6, B, H] (da_g; the rows are the K of
    da_g^T [v, 1]) and V [M, L, 6, B, C] ([v, 1]: v = x for dW_ir, dW_iz, dW_in, h_{t-1} for dW_h*)."""
    xt = x.transpose(0, 2, 1, 3)  # [M, L, B, I]
    xv = np.concatenate([xt, np.ones(xt.shape[:-1] + (1,))], axis=-1)
    hv = np.concatenate([h_prev, np.ones(h_prev.shape[:-1] + (1,))], axis=-1)
    a = np.stack([da[:, :, :, g] for g in (0, 1, 2, 0, 1, 3)], axis=2)
    return a, np.stack([xv] * 3 + [hv] * 3, axis=2)


def _check_bptt(rng: np.random.Generator) -> None:
    """Assert the numpy BPTT's weight, bias and input gradients against torch float64 autograd."""
    x, w_ih, w_hh, b_ih, b_hh, grad = _layer(rng, 1, 5, 7)
    saved = _forward(x, w_ih, w_hh, b_ih, b_hh)
    da, dx = _backward(saved, grad, w_ih, w_hh, "exact", None)
    dw = np.einsum("mlgbh,mlgbc->mghc", *_gate_operands(da, x, saved[:, :, 0]))[0]  # [6, H, C]
    ours = {"w_ih": dw[:3, :, :INPUT].reshape(-1, INPUT), "w_hh": dw[3:, :, :HIDDEN].reshape(-1, HIDDEN),
            "b_ih": dw[:3, :, INPUT].reshape(-1), "b_hh": dw[3:, :, HIDDEN].reshape(-1),
            "x": dx[0].transpose(1, 0, 2)}
    t = {k: torch.tensor(v[0], requires_grad=True)
         for k, v in {"w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh, "x": x}.items()}
    h = torch.zeros(x.shape[1], HIDDEN, dtype=torch.float64)
    outs = []
    for step in range(x.shape[2]):
        i_r, i_z, i_n = torch.nn.functional.linear(t["x"][:, step], t["w_ih"], t["b_ih"]).chunk(3, dim=1)
        h_r, h_z, h_n = torch.nn.functional.linear(h, t["w_hh"], t["b_hh"]).chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h = (1 - z) * n + z * h
        outs.append(h)
    torch.stack(outs, dim=1).backward(torch.tensor(grad[0]))
    for k, v in t.items():
        assert np.allclose(ours[k], v.grad.numpy(), rtol=1e-12, atol=1e-12), k


def _tiles(a: Array, v: Array, block_b: int) -> tuple[Array, Array]:
    """Float32 operands in the kernel's step order t = L-1..0, in tiles: [M, L, 6, tiles, block_b, *]."""
    batch = a.shape[3]
    tiles = -(-batch // block_b)
    width = [(0, 0)] * 3 + [(0, tiles * block_b - batch), (0, 0)]
    out = [np.pad(u, width).reshape(u.shape[:3] + (tiles, block_b, u.shape[-1]))[:, ::-1].astype(np.float32)
           for u in (a, v)]
    return out[0], out[1]


def _case_data(rng: np.random.Generator, case: Case, m: int) -> dict[str, Array]:
    x, w_ih, w_hh, b_ih, b_hh, grad = _layer(rng, m, case.batch, case.length)
    saved = _forward(x, w_ih, w_hh, b_ih, b_hh)
    da, dx = _backward(saved, grad, w_ih, w_hh, "exact", None)
    a, v = _gate_operands(da, x, saved[:, :, 0])
    return {"x": x, "w_ih": w_ih, "w_hh": w_hh, "grad": grad, "saved": saved, "dx": dx,
            "dw": np.einsum("mlgbh,mlgbc->mghc", a, v), "a": a, "v": v}


def _rel_per_model(out: Array, ref: Array) -> list[float]:
    return [float(np.linalg.norm(o - r) / np.linalg.norm(r)) for o, r in zip(out, ref, strict=True)]


def _errors(d: dict[str, Array], per_tile: Array) -> tuple[list[float], list[float]]:
    """Sum the tiles' dW slices in float32 (torch's reduction), then per model the norm-relative error
    of w_ih, w_hh (the larger) and of b_ih, b_hh (the larger) against the exact d["dw"]."""
    out = per_tile[:, :, 0].astype(np.float32)
    for i in range(1, per_tile.shape[2]):
        out = out + per_tile[:, :, i].astype(np.float32)
    out, ref = out.astype(np.float64), d["dw"]
    w = np.maximum(_rel_per_model(out[:, :3, :, :INPUT], ref[:, :3, :, :INPUT]),
                   _rel_per_model(out[:, 3:, :, :HIDDEN], ref[:, 3:, :, :HIDDEN]))
    b = np.maximum(_rel_per_model(out[:, :3, :, INPUT], ref[:, :3, :, INPUT]),
                   _rel_per_model(out[:, 3:, :, HIDDEN], ref[:, 3:, :, HIDDEN]))
    return list(w), list(b)


# ---------------------------------------------------------------- arithmetic


def _split(u: Array) -> tuple[Array, Array]:
    """The kernel's split of float32 u: hi rounded to tf32 by (bits + 0x1000) & 0xFFFFE000, lo = u - hi
    in float32; both as the tensor core reads them (the top 19 bits: hi exactly, lo truncated)."""
    u = np.ascontiguousarray(u, dtype=np.float32)
    hi = ((u.view(np.uint32) + np.uint32(0x1000)) & TF32_MASK).view(np.float32)
    lo = ((u - hi).view(np.uint32) & TF32_MASK).view(np.float32)
    return hi.astype(np.float64), lo.astype(np.float64)


def _truncate(u: Array, exponent: Array) -> Array:
    """u with the bits below 2^exponent dropped (toward zero)."""
    return np.ldexp(np.trunc(np.ldexp(u, -exponent)), exponent)


def _mma(c: Array, a: Array, v: Array, tc: TensorCore) -> Array:
    """c + a^T v by the tensor-core model: c [..., P, Q], a [..., k, P], v [..., k, Q], float32 values."""
    prod = a[..., :, :, None] * v[..., :, None, :]  # [..., k, P, Q], exact: 11 x 11 significant bits
    if tc.extra is None:
        s = c + prod.sum(axis=-3)  # exact to ~2^-50 of the largest addend, far below float32's ulp
    else:
        biggest = np.maximum(np.abs(c), np.abs(prod).max(axis=-3))
        emax = np.frexp(biggest)[1]  # biggest in [2^(emax-1), 2^emax)
        keep = emax - F32_BITS - tc.extra
        s = _truncate(c, keep) + _truncate(prod, keep[..., None, :, :]).sum(axis=-3)  # exact in float64
    if tc.final == "RZ":
        return _truncate(s, np.frexp(s)[1] - F32_BITS)
    return _f32(s)


def _accumulate(a: Array, v: Array, block_b: int, scheme: str, tc: TensorCore | None) -> Array:
    """dW_g per tile, sum over steps of a^T v: a [M, L, 6, tiles, block_b, H], v [..., block_b, C]
    (float32, in step order) -> [M, 6, tiles, H, C]. "ieee": sequential float32 FMAs over steps and
    rows; "carried"/"fixed": per step lo.hi, hi.lo, hi.hi, block_b / k mma's each, into the carried
    accumulator, or from zero and then added to it in float32."""
    assert a.shape[4] == block_b
    shape = a.shape[:1] + a.shape[2:4] + (a.shape[-1], v.shape[-1])
    if scheme == "ieee":  # float64 product exact; the sum rounded twice, off by an ulp ~2^-29 of the time
        acc = np.zeros(shape, dtype=np.float32)
        for t in range(a.shape[1]):
            for k in range(block_b):
                acc = (a[:, t, :, :, k, :, None].astype(np.float64) * v[:, t, :, :, k, None, :] + acc
                       ).astype(np.float32)
        return acc.astype(np.float64)
    (a_hi, a_lo), (v_hi, v_lo) = _split(a), _split(v)
    carry = np.zeros(shape)
    for t in range(a.shape[1]):
        acc = np.zeros(shape) if scheme == "fixed" else carry
        for aa, vv in ((a_lo, v_hi), (a_hi, v_lo), (a_hi, v_hi)):
            for k0 in range(0, block_b, tc.k):
                acc = _mma(acc, aa[:, t, :, :, k0:k0 + tc.k], vv[:, t, :, :, k0:k0 + tc.k], tc)
        carry = _f32(carry + acc) if scheme == "fixed" else acc
    return carry


def _row_products(c: Array, terms: list[tuple[Array, Array]], scheme: str, tc: TensorCore | None,
                  from_zero: bool = False) -> Array:
    """c + sum_g a_g @ w_g for the dh and dx products: c [M, B, Q], a_g [M, B, H] (float32 values),
    w_g [M, H, Q]; K = H padded to PAD as in the kernel. "fixed" (unless `from_zero`) starts the
    products from zero and adds c in float32 at the end."""
    if scheme == "exact":
        return c + sum(np.einsum("mbk,mkq->mbq", a, w) for a, w in terms)
    if scheme == "ieee":
        acc = c.astype(np.float32)
        for a, w in terms:
            for k in range(a.shape[-1]):
                acc = (a[:, :, k, None] * w[:, k, None, :] + acc).astype(np.float32)
        return acc.astype(np.float64)
    fixed = scheme == "fixed" and not from_zero
    acc = np.zeros_like(c) if fixed else c
    for a, w in terms:
        (a_hi, a_lo), (w_hi, w_lo) = _split(a.swapaxes(1, 2)), _split(w)  # a^T [M, K, B]
        pad = [(0, 0), (0, PAD - a_hi.shape[1]), (0, 0)]
        a_hi, a_lo, w_hi, w_lo = (np.pad(u, pad) for u in (a_hi, a_lo, w_hi, w_lo))
        for aa, ww in ((a_lo, w_hi), (a_hi, w_lo), (a_hi, w_hi)):
            for k0 in range(0, PAD, tc.k):
                acc = _mma(acc, aa[:, k0:k0 + tc.k], ww[:, k0:k0 + tc.k], tc)
    return _f32(c + acc) if fixed else acc


if __name__ == "__main__":
    main()
