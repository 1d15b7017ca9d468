"""What a smaller mini-batch costs per epoch: the price of batch 8 (specs mlds-5 and mlds-6) against 32.

mlds-5 and mlds-6 train with batches of 8 sequences instead of 32: four times the Adam steps per epoch, which
is what shortens the ln2/8 plateau (docs/MLDS.md, section 10). An epoch still trains on every one of
the 1,000 sequences once, so its arithmetic is the same; what grows is the per-step work that does
not scale with the batch (kernel calls, gathers, the Adam update over every weight). This measures
that: one population of `--networks` mlds-gru networks on MLDS's data (1,000 training and 200
validation sequences of 100 steps), one epoch at a time, the batch sizes alternating in rounds so a
noisy machine slows each alike, on the project's trainer (C kernels on the CPU). The baseline, batch
32, is measured in the same run; the last line is `batch <b> vs 32: <x>x the time per epoch`.

    python benchmarks/batch_size_cost.py                      # about 5 minutes on one core
    python benchmarks/batch_size_cost.py --batches 32,16,8,4 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mlc import tasks, work
from mlc.train import PopulationState, PopulationTrainer, TrainConfig, TrainingArrays


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", type=int, default=30, help="population size (30: one calibration run)")
    p.add_argument("--batches", default="32,8", help="comma-separated; the first is the baseline")
    p.add_argument("--rounds", type=int, default=3, help="timed epochs per batch size")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def main() -> None:
    args = _args()
    batches = [int(b) for b in args.batches.split(",")]
    work.set_training_threads(args.threads)
    machines = tasks.names("ds1") + tasks.names("ds2")
    spec = tasks.DataSpec(seed=1, trigger_rate=0.25, disarm_rate=0.5)
    arrays = TrainingArrays.from_shared(tasks.shared_data_for_tasks(spec, machines, {}), machines)
    population = work.population_for("mlds-gru", torch.device("cpu"))
    names = [machines[i % len(machines)] for i in range(args.networks)]
    seeds = list(range(args.networks))
    # never stops (the stop rule cannot be met): every timed epoch trains every network
    trainers = {b: PopulationTrainer(population, TrainConfig(batch_size=b, lr=3e-3, stop_val_loss=1e-30))
                for b in batches}
    states = {b: PopulationState.fresh(population.init(seeds)) for b in batches}
    for b in batches:  # start-up: kernel build and first-call costs, not timed
        trainers[b].train(states[b], seeds, names, arrays, 1)
    times: dict[int, list[float]] = {b: [] for b in batches}
    for r in range(args.rounds):
        for b in batches:
            start = time.perf_counter()
            trainers[b].train(states[b], seeds, names, arrays, 1)
            times[b].append(time.perf_counter() - start)
        print(f"round {r + 1}: " + ", ".join(f"batch {b} {times[b][-1]:.1f} s" for b in batches), flush=True)
    base = statistics.median(times[batches[0]])
    print(f"{args.networks} networks, {population.kernels}, median of {args.rounds} epochs:")
    for b in batches:
        median = statistics.median(times[b])
        print(f"  batch {b}: {median / args.networks:.3f} s per network-epoch")
    for b in batches[1:]:
        print(f"batch {b} vs {batches[0]}: {statistics.median(times[b]) / base:.2f}x the time per epoch")


if __name__ == "__main__":
    main()
