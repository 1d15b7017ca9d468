"""Training throughput of the population trainer against the naive one-network-at-a-time loop.

A model-step is one optimiser step of one network on a 32 x 100 mini-batch (forward, backward, Adam):
about 77 MFLOP for mlds-gru. Both sides are measured in this run, on this machine, so the ratio is
meaningful on a noisy machine where absolute numbers are not. Each configuration runs in a fresh
child process, so its peak memory is its own. MiB/model is that peak's growth per model: on CUDA
max_memory_allocated, the live tensors that `mlc run` sizes populations by (its estimate is printed
beside it); on the CPU the resident set, which also keeps what the allocator holds after frees (C
kernels, 64 -> 128 models: 1.84 MiB per model against 1.25 MiB of live tensors).

    python benchmarks/train_throughput.py --device cpu            # under 10 minutes on 2 cores
    python benchmarks/train_throughput.py --device cuda --sizes 1024,4096,16384

The population side runs the real trainer (`PopulationTrainer.train`, one epoch of `--steps`
mini-batches, with validation on one sequence per five trained, as MLDS's 1,000 / 200); building
the kernels (their first-run check compiles them) and its first epoch are reported as start-up and
excluded from the rate. The last line is `ratio vs naive loop: <x>x`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _flop_per_model_step() -> int:
    """The count volunteers' credit uses too (`GRUNetConfig.train_flop`), for one 32 x 100 mini-batch."""
    from mlc.models import MLDS_GRU

    return MLDS_GRU.train_flop(32, 100)


def _data(steps: int, device: str):
    from mlc import tasks
    from mlc.train import TrainingArrays

    names = list(tasks.names())
    spec = tasks.DataSpec(seed=1, n_train=32 * steps, n_val=max(1, 32 * steps // 5), length=100)
    shared = tasks.make_shared_data(spec, map(tasks.get, names))
    return names, TrainingArrays.from_shared(shared, names, device)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _peak_bytes(device: str) -> int:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_naive(device: str, steps: int) -> dict:
    """One reference nn.GRU network at a time, torch.optim.Adam: what a per-network client does."""
    from mlc import models
    from mlc.train import TrainConfig, train_reference

    names, data = _data(steps, device)
    base = _peak_bytes(device)
    times = []
    for seed in range(3):  # the first network warms up (cuDNN plans, allocator)
        module = models.get("mlds-gru", seed=seed).to(device)
        _sync(device)
        start = time.perf_counter()
        train_reference(module, seed, names[seed], data, TrainConfig(), epochs=1)
        _sync(device)
        times.append(time.perf_counter() - start)
    rate = steps / min(times[1:])
    return {
        "method": "naive nn.GRU loop",
        "models": 1,
        "model_steps_s": rate,
        "peak_bytes_per_model": _peak_bytes(device) - base,
        "startup_s": times[0],
    }


def _population(layer: str, dev, head: str):
    import torch

    from mlc import models, work

    if layer == "manual":  # the CPU fallback's threads, as `population_for` gives it
        return models.population("mlds-gru", threads=models.native_threads() if dev.type == "cpu" else 1)
    if layer == "auto":
        return work.population_for("mlds-gru", dev, head)
    if layer == "native":
        if not models.native_available():
            raise RuntimeError(f"C kernels unavailable: {models.native_unavailable_reason()}")
        return work.population_for("mlds-gru", torch.device("cpu"), head)
    if dev.type != "cuda":
        raise RuntimeError(f"--layer {layer} is the Triton recurrence's precision: it needs --device cuda")
    # what the trainer builds for that precision, first-run check included (`kernels` says if it fell back)
    return work.population_for("mlds-gru", dev, head, precision=layer)


def measure_population(device: str, steps: int, m: int, layer: str, head: str) -> dict:
    import torch

    from mlc.train import PopulationState, PopulationTrainer, TrainConfig, bytes_per_network

    names, data = _data(steps, device)
    dev = torch.device(device)
    built = time.perf_counter()
    population = _population(layer, dev, head)  # the first-run check compiles the kernels here
    build_s = time.perf_counter() - built
    seeds = list(range(m))
    state = PopulationState.fresh(population.init(seeds)).to(dev)
    config = TrainConfig(max_epochs=100)
    trainer = PopulationTrainer(population, config)
    tasks_of = [names[i % len(names)] for i in seeds]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = 0 if device == "cuda" else _peak_bytes(device)
    epoch_times = []
    for _ in range(3):
        _sync(device)
        start = time.perf_counter()
        trainer.train(state, seeds, tasks_of, data, 1)
        _sync(device)
        epoch_times.append(time.perf_counter() - start)
    rate = m * steps / min(epoch_times[1:])
    return {
        "method": "population (manual)" if layer == "manual" else f"population ({layer}, {head} head)",
        "models": m,
        "model_steps_s": rate,
        "peak_bytes_per_model": (_peak_bytes(device) - base) / m,
        # what `mlc run` sizes populations by, for this path
        "estimated_bytes_per_model": bytes_per_network(
            population, config.batch_size, data.train_x.shape[1], data.n_train
        ),
        "startup_s": build_s + epoch_times[0],  # building (and checking) the kernels and a first epoch
        "kernels": population.kernels,
    }


def run_child(args: list[str], threads: int, env: dict[str, str] | None = None) -> dict:
    """One measurement (`--child` arguments) in a fresh process, with `env` as its environment when
    given (revision_ab.py points PYTHONPATH at another revision's package)."""
    command = [sys.executable, __file__, "--threads", str(threads), "--child", *args]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1], "args": args}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--sizes", default=None, help="population sizes, comma-separated")
    parser.add_argument("--steps", type=int, default=None, help="mini-batches per timed epoch")
    parser.add_argument(
        "--layer",
        choices=["auto", "manual", "native", "ieee", "tf32x3"],
        default="auto",
        help="auto: what the trainer picks for the device (CPU: native when it builds); manual: the "
        "PyTorch recurrence; native: the C kernels (CPU); ieee/tf32x3: the Triton kernel in that precision",
    )
    parser.add_argument(
        "--head",
        choices=["fused", "torch"],
        default="fused",
        help="the MLP head and loss: fused (C on the CPU, Triton on CUDA; the trainer's choice) or torch",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads on both sides: the naive loop's PyTorch intra-op threads; the population's "
        "training threads, each a range of its networks with PyTorch and the C kernels at one thread "
        "inside, as `mlc run` runs it",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        from mlc import train, work

        kind, device, steps, *rest = args.child
        if kind == "population" and device == "cpu":
            work.set_training_threads(args.threads)  # as `mlc run` trains
        else:
            torch.set_num_threads(args.threads)  # the naive loop's intra-op threads
        # as `mlc run` does, on both sides (a revision from before it has none: revision_ab.py)
        keep_freed_memory = getattr(train, "keep_freed_memory", None)
        if keep_freed_memory is not None:
            keep_freed_memory()
        result = (
            measure_naive(device, int(steps))
            if kind == "naive"
            else measure_population(device, int(steps), int(rest[0]), rest[1], rest[2])
        )
        print(json.dumps(result))
        return
    cuda = args.device == "cuda"
    sizes = [int(s) for s in (args.sizes or ("1024,4096,16384" if cuda else "16,64,128")).split(",")]
    steps = args.steps or (32 if cuda else 4)
    rows = [run_child(["naive", args.device, str(steps)], args.threads)]
    for m in sizes:
        command = ["population", args.device, str(steps), str(m), args.layer, args.head]
        rows.append(run_child(command, args.threads))
        print(json.dumps(rows[-1]), flush=True)
    naive = rows[0].get("model_steps_s")
    flop_per_model_step = _flop_per_model_step()
    header = ("method", "models", "model-steps/s", "GFLOP/s", "MiB/model", "(estimate)", "start-up s")
    print("\n{:36} {:>7} {:>14} {:>9} {:>10} {:>10} {:>10}".format(*header))
    for r in rows:
        if "error" in r:
            print(f"{'failed ' + ' '.join(r['args'][3:]):36} {r['error']}")
            continue
        gflops = r["model_steps_s"] * flop_per_model_step / 1e9
        mib = r["peak_bytes_per_model"] / 2**20
        estimate = f"{r['estimated_bytes_per_model'] / 2**20:.2f}" if "estimated_bytes_per_model" in r else ""
        print(
            f"{r['method']:36} {r['models']:>7} {r['model_steps_s']:>14.1f} {gflops:>9.1f} {mib:>10.2f} "
            f"{estimate:>10} {r['startup_s']:>10.2f}"
        )
    best = max((r for r in rows[1:] if "error" not in r), key=lambda r: r["model_steps_s"], default=None)
    if best:
        print(f"kernels: {best['kernels']}")
    if naive and best:
        print(
            f"best: {best['method']} with {best['models']} models; "
            f"{flop_per_model_step / 1e6:.1f} MFLOP per model-step"
        )
        print(f"ratio vs naive loop: {best['model_steps_s'] / naive:.1f}x")
    else:
        print("ratio vs naive loop: unavailable (a measurement failed)")
        sys.exit(1)


if __name__ == "__main__":
    main()
