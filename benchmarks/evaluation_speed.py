"""Validation through the fused head against validation through the PyTorch head, same run.

`evaluate` is what every epoch ends with (one validation sequence per five trained in MLDS). Both
sides use the same population, recurrence and weights on the device; only the head differs (the
population's fused `head_eval`, or None for the PyTorch head), interleaved so that a noisy machine
slows both alike. The last line is `ratio vs PyTorch head: <x>x`.

    python benchmarks/evaluation_speed.py --device cpu          # about 15 s on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from mlc import tasks, work
from mlc.train import TrainingArrays, evaluate, keep_freed_memory

TASKS = ["SingleDirectMachine", "ParityMachine"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--models", type=int, default=None, help="networks [CPU 128, CUDA 4096]")
    parser.add_argument("--sequences", type=int, default=200, help="validation sequences (MLDS: 200)")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    device = torch.device(args.device)
    work.set_training_threads(1)
    keep_freed_memory()  # as `mlc run` does
    fused = work.population_for("mlds-gru", device)
    if fused.head_eval is None:
        raise SystemExit(f"no fused head on {device}: {fused.kernels}")
    plain = copy.copy(fused)
    plain.head_eval = None
    m = args.models or (4096 if device.type == "cuda" else 128)
    spec = tasks.DataSpec(seed=5, n_train=32, n_val=args.sequences, length=100)
    arrays = TrainingArrays.from_shared(tasks.make_shared_data(spec, map(tasks.get, TASKS)), TASKS, device)
    params = fused.init(range(m)).to(device)
    rows = arrays.task_rows([TASKS[i % len(TASKS)] for i in range(m)])
    times: dict[str, list[float]] = {"fused head": [], "PyTorch head": []}
    results = {}
    for _ in range(args.repeats):
        for name, population in (("fused head", fused), ("PyTorch head", plain)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            results[name] = evaluate(population, params, arrays.val_x, arrays.val_y, rows, 32)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    print(f"{fused.kernels}; {m} networks, {args.sequences} x 100 sequences, 32 per pass")
    for name, seconds in times.items():
        print(f"{name:13} " + " ".join(f"{s:.3f}" for s in seconds) + f"  best {min(seconds):.3f} s")
    loss, plain_loss = results["fused head"][0], results["PyTorch head"][0]
    accuracy, plain_accuracy = results["fused head"][1], results["PyTorch head"][1]
    print(
        f"agreement: loss {((loss - plain_loss).abs() / plain_loss).max().item():.1e} relative, "
        f"accuracy {(accuracy - plain_accuracy).abs().max().item():.1e}"
    )
    print(f"ratio vs PyTorch head: {min(times['PyTorch head']) / min(times['fused head']):.2f}x")


if __name__ == "__main__":
    main()
