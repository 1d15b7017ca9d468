"""Matrix products for the Triton kernels in float32, on CUDA cores or on tensor cores at float32
accuracy, and sums carried across a kernel's loop (the GRU's time steps, the head's row tiles).

PRECISION "ieee": tl.dot as float32 FMAs. "tf32x3": each operand split v = hi + lo with hi rounded to
tf32, and hi.hi + hi.lo + lo.hi on tensor cores; dropping lo.lo costs ~2^-22. "tf32": one tensor-core
product, ~1e-3, for measurement only.

The tensor cores' float32 accumulation truncates toward zero instead of rounding, so a sum carried
across a loop through their accumulator drifts toward zero by up to an ulp per product: an H200
measured 2.2e-5 on the GRU's weight gradients at L=100 steps, growing linearly with L (ieee: 7e-7).
`_accumulate` therefore starts each iteration's products from zero and adds them to the carried sum
in a rounded CUDA-core add, which bounds the truncation to one iteration's K terms
(benchmarks/tf32x3_error_model.py emulates both); ieee FMAs round, so they add in place.
"""

from __future__ import annotations

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised on installs without the gpu extra
    triton = None

__all__ = ["PRECISIONS", "check_precision"]

PRECISIONS = ("ieee", "tf32x3", "tf32")


def check_precision(precision: str, allowed: tuple[str, ...] = PRECISIONS) -> None:
    if precision not in allowed:
        raise ValueError(f"precision must be one of {allowed}, got {precision!r}")


if triton is not None:

    @triton.jit
    def _split(v, PRECISION: tl.constexpr):
        """(hi, lo) with v = hi + lo exactly and hi rounded to tf32 (10 mantissa bits), for 3xTF32
        products; other precisions use v itself and never read lo."""
        if PRECISION == "tf32x3":
            bits = v.to(tl.uint32, bitcast=True)
            hi = ((bits + 0x1000) & 0xFFFFE000).to(tl.float32, bitcast=True)
            lo = v - hi
        else:
            hi = v
            lo = v
        return hi, lo

    @triton.jit
    def _mm(a_hi, a_lo, b_hi, b_lo, acc, PRECISION: tl.constexpr):
        """acc + a @ b. 3xTF32 drops only lo@lo (~2^-22 relative); tensor cores read the top 19
        bits of each float32 operand, which hold hi exactly and lo to 2^-11 of itself."""
        if PRECISION == "tf32x3":
            acc = tl.dot(a_lo, b_hi, acc, input_precision="tf32")
            acc = tl.dot(a_hi, b_lo, acc, input_precision="tf32")
            acc = tl.dot(a_hi, b_hi, acc, input_precision="tf32")
        else:
            acc = tl.dot(a_hi, b_hi, acc, input_precision=PRECISION)
        return acc

    @triton.jit
    def _start(carry, PRECISION: tl.constexpr):
        """Where an iteration's products into a carried sum begin: the carry itself for ieee FMAs,
        zero on tensor cores, whose accumulation truncates (`_finish` then adds them, rounded)."""
        if PRECISION == "ieee":  # noqa: SIM108 - a static branch of the Triton frontend
            out = carry
        else:
            out = tl.zeros(carry.shape, dtype=tl.float32)
        return out

    @triton.jit
    def _finish(products, carry, PRECISION: tl.constexpr):
        """carry + this iteration's products, begun from `_start(carry)`."""
        if PRECISION == "ieee":  # noqa: SIM108 - a static branch of the Triton frontend
            out = products
        else:
            out = carry + products
        return out

    @triton.jit
    def _accumulate(a_hi, a_lo, b_hi, b_lo, carry, PRECISION: tl.constexpr):
        """carry + a @ b for a sum carried across a loop's iterations (see the module docstring)."""
        return _finish(_mm(a_hi, a_lo, b_hi, b_lo, _start(carry, PRECISION), PRECISION), carry, PRECISION)
