"""Matrix products for the Triton kernels in float32 and the sums they carry across a loop (the
GRU's time steps, the head's row tiles): PRECISION "ieee" computes tl.dot as float32 FMAs; "tf32x3"
splits each operand v = hi + lo with hi rounded to tf32 and adds hi.hi + hi.lo + lo.hi from tensor
cores (dropping lo.lo costs ~2^-22); "tf32", one tensor-core product (~1e-3), is for measurement
only. The tensor cores' float32 accumulation truncates toward zero instead of rounding, so a sum
carried through their accumulator drifts toward zero by up to an ulp per product (an H200 measured
2.2e-5 on the GRU's weight gradients at L=100, linear in L; ieee 7e-7): `_accumulate` starts each
iteration's products from zero and adds them to the carried sum in a rounded CUDA-core add, which
bounds the truncation to one iteration's K terms (benchmarks/tf32x3_error_model.py emulates both).
"""

from __future__ import annotations

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised on installs without the gpu extra
    triton = None

__all__ = ["PRECISIONS", "check_precision"]

PRECISIONS = ("ieee", "tf32x3", "tf32")


def check_precision(precision: str) -> None:
    """Reject a precision the kernels do not know, naming the ones they do."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


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
