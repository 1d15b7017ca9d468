"""Which kernels train a model on this device, chosen once per process: the worker runtime's choice.

A kernel (C on the CPU, Triton on CUDA) trains only after its first step on the device agrees with the
PyTorch path (`_first_run`); the verdict is kept per process, as the compiler, instruction set or GPU
does not change under a running worker. The runtime (`_runtime`), the DS3 learnability check and the
benchmarks ask here; nothing in `models` decides for them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import torch

from mlc import models
from mlc.models import AnyPopulation, Population
from mlc.work._first_run import first_run_failure

__all__ = ["population_for", "set_training_threads"]


def population_for(
    name: str, device: torch.device, head: str = "fused", precision: str = "ieee"
) -> AnyPopulation:
    """The fastest correct implementation for `device`: on a CUDA GPU the Triton kernels (recurrence,
    and head fused with the loss) when Triton is installed; on the CPU the C kernels (the same two)
    when a C compiler can build them; the hand-differentiated PyTorch recurrence otherwise.

    `head` picks the MLP head and loss: "fused" (the device's fused kernel: C on the CPU, Triton on
    CUDA) or "torch" (PyTorch ops). The Triton head is not yet timed on a GPU; its sm_90a build
    issues ~1.3 us of instructions per model-step, where the H200 profile measured >= 3.8 us in the
    PyTorch head's GEMMs and ReLUs alone (benchmarks/gpu_session.sh times both). Fused kernels, C
    or Triton, train only after a first step on the device agrees with the PyTorch path
    (`_first_run`; a compiler, an instruction set or a GPU the kernels were never run on here);
    else the head, then the recurrence, falls back, and `Population.kernels` says why.

    `precision` is the fused CUDA recurrence's: "ieee" (float32 FMAs) or "tf32x3" (tensor cores at
    float32 accuracy, faster on an H200; ieee stays the default until a GPU check of the tf32x3
    accumulation fix passes). The CPU kernels compute in float32 FMAs, "ieee" only."""
    if not isinstance(models.config(name), models.GRUNetConfig):  # a family without fused kernels
        return models.population(name)
    if head not in ("fused", "torch"):
        raise ValueError(f"head must be fused or torch, not {head!r}")
    if precision not in ("ieee", "tf32x3") or (precision != "ieee" and device.type != "cuda"):
        raise ValueError(f"precision must be ieee, or tf32x3 on a CUDA device; got {precision!r} on {device}")
    if device.type == "cuda":
        return _triton_population_for(name, device, head, precision)
    if device.type != "cpu":
        return models.population(name)
    threads = models.native_threads()
    if not models.native_available():
        reason = (models.native_unavailable_reason() or "").splitlines()[0]
        kernels = f"PyTorch GRU (C kernels unavailable: {reason})"
        return models.population(name, kernels=kernels, threads=threads)
    candidates = (_native_population(name, f) for f in _heads(head == "fused"))
    return _first_that_runs(name, device, candidates, "C", threads)


def _heads(fused: bool) -> list[bool]:
    """Whether each candidate has the fused head, in order of preference."""
    return [True, False] if fused else [False]


def _native_population(name: str, fused_head: bool) -> Population:
    from mlc.models.native._gru import LANE_LAYOUT, gru_layer_native
    from mlc.models.native._head import head_eval_native, head_loss_native

    threads = models.native_threads()
    kernels = f"C kernels{'' if fused_head else ' (PyTorch head)'}, {threads} thread" + "s" * (threads > 1)
    note = models.native_build_note()
    kernels += f"; {note}" if note else ""
    return models.population(
        name,
        gru_layer_native,
        head_loss_native if fused_head else None,
        LANE_LAYOUT,
        kernels=kernels,
        head_eval=head_eval_native if fused_head else None,
        keeps_gates=False,
        threads=threads,
    )


def _triton_population_for(name: str, device: torch.device, head: str, precision: str) -> Population:
    from mlc.models.triton._gru import triton_available
    from mlc.models.triton._head import head_triton_available

    if not triton_available(device):
        return models.population(name, kernels="PyTorch GRU (Triton is not installed)")
    if device.type == "cuda" and device.index is None:  # one check per GPU, whichever way it is named
        device = torch.device("cuda", torch.cuda.current_device())
    fused = head == "fused" and head_triton_available(device, models.config(name).fc_sizes)
    return _first_that_runs(
        name, device, (_triton_population(name, precision, f) for f in _heads(fused)), "Triton"
    )


def _triton_population(name: str, precision: str, fused_head: bool) -> Population:
    from mlc.models.triton._gru import gru_layer_triton
    from mlc.models.triton._head import head_eval_triton, head_loss_triton

    gru = models.from_batch_major(functools.partial(gru_layer_triton, precision=precision))
    kernels = f"fused Triton GRU ({precision}){' and head (ieee)' if fused_head else ''}"
    return models.population(
        name,
        gru,
        head_loss_triton if fused_head else None,
        kernels=kernels,
        head_eval=head_eval_triton if fused_head else None,
        keeps_gates=False,
    )


def _first_that_runs(
    name: str, device: torch.device, candidates: Iterable[Population], family: str, threads: int = 1
) -> Population:
    """The first candidate (built as needed) whose first run on `device` agrees with the PyTorch path,
    noting a fused head that failed; the PyTorch population, saying why and trained by `threads` CPU
    threads, when none does. `family` names the kernels."""
    failures = []
    for candidate in candidates:
        failure = _checked_first_run(name, device, candidate)
        if failure is None:
            if failures:
                candidate.kernels += f"; {family} head failed its first run: {failures[0]}"
            return candidate
        failures.append(failure)
    kernels = f"PyTorch GRU ({family} kernels failed their first run: {failures[-1]})"
    return models.population(name, kernels=kernels, threads=threads)


_FIRST_RUNS: dict[tuple[str, torch.device, str], str | None] = {}


def _checked_first_run(name: str, device: torch.device, candidate: Population) -> str | None:
    """Why `candidate` (named by its kernels) cannot train `name` on `device`, or None: checked once
    per process, except that running out of memory is not remembered (memory may be free later)."""
    key = (name, device, candidate.kernels)
    if key not in _FIRST_RUNS:
        failure = first_run_failure(candidate, models.population(name), device)
        if failure is not None and failure.startswith("OutOfMemoryError"):
            return failure
        _FIRST_RUNS[key] = failure
    return _FIRST_RUNS[key]


def set_training_threads(n: int | None) -> None:
    """CPU threads for training: `n` (None: all cores), each training a range of the networks (the
    trainer's pieces, `run_parallel`), or splitting a kernel call's models when one is made outside
    them. PyTorch keeps one intra-op thread, as its OpenMP threads spin-wait when another process
    holds a core (measured on 2 busy cores, one epoch of 30 networks on the PyTorch path: 1.8 s with
    one thread, 102 s with two)."""
    torch.set_num_threads(1)
    models.set_native_threads(n)
