"""Tensor cores for Triton's CPU interpreter, for the kernel tests' child processes (importable there
because a test file runs as a script from this directory).

The interpreter computes every tl.dot in float32 whatever its input precision. `emulated_tensor_cores`
makes tf32 products behave the way an H200 measurement fits (benchmarks/tf32x3_error_model.py,
variant "k8 +3 RZ"): operands read as tf32 (their top 19 bits), products exact, each mma adds 8 of
them to the accumulator after aligning all to the largest exponent with 3 bits below float32's last
place, and normalises the sum toward zero. Under it one tf32 product is ~1.5e-3 off, and a sum
carried across 100 steps through the accumulator drifts by ~2.5e-5, both as measured on the H200.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType
from unittest import mock

import numpy as np
from triton._C.libtriton import ir
from triton.runtime.interpreter import InterpreterBuilder, TensorHandle

__all__ = ["carried_on_tensor_cores", "emulated_tensor_cores"]

_MMA_K = 8  # products per mma
_ALIGN_BITS = 24 + 3  # float32's significand and the alignment's extra bits


def _truncate(u: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """u without its bits below 2^exponent (toward zero)."""
    return np.ldexp(np.trunc(np.ldexp(u, -exponent)), exponent)


def _tf32(u: np.ndarray) -> np.ndarray:
    return (u.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32).astype(np.float64)


def _mma_chain(a: np.ndarray, b: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """acc [R, N] + a [R, K] @ b [K, N] as a chain of K / 8 emulated mma's, float32 out."""
    a64, b64, c = _tf32(a), _tf32(b), acc.astype(np.float64)
    for k in range(0, a64.shape[-1], _MMA_K):
        products = a64[:, k : k + _MMA_K, None] * b64[None, k : k + _MMA_K, :]  # [R, k, N], exact
        biggest = np.maximum(np.abs(c), np.abs(products).max(axis=1))
        keep = np.frexp(biggest)[1] - _ALIGN_BITS
        total = _truncate(c, keep) + _truncate(products, keep[:, None, :]).sum(axis=1)  # exact
        c = _truncate(total, np.frexp(total)[1] - 24)
    return c.astype(np.float32)


@contextlib.contextmanager
def emulated_tensor_cores() -> Iterator[None]:
    """Within the block, the interpreter's tf32 tl.dot runs on the emulated tensor cores."""
    original = InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if input_precision != ir.INPUT_PRECISION.TF32:
            return original(self, a, b, d, input_precision, max_num_imprecise_acc)
        return TensorHandle(_mma_chain(a.data, b.data, d.data), d.dtype.scalar)

    with mock.patch.object(InterpreterBuilder, "create_dot", create_dot):
        yield


@contextlib.contextmanager
def carried_on_tensor_cores(module: ModuleType) -> Iterator[None]:
    """Within the block, the sums `module`'s kernels carry across a loop go through the tensor cores'
    accumulator, as before the fix (`_start`/`_finish` in their ieee form), to show the fix matters."""
    with (
        mock.patch.object(module, "_start", lambda carry, precision: carry),
        mock.patch.object(module, "_finish", lambda out, carry, precision: out),
    ):
        yield
