"""Calibrate DS3 by measurement: how many random automata can reference networks fit, per n_states?

Trains `--networks` mlds-gru networks on each of `--automata` random automata for every `--n-states`
value, all in ONE population through `mlc.train.check_learnability` (the same code the preset's
learnability check runs), and reports per n_states the fraction of automata kept within the epoch
budget, and within fractions of it, since a kept automaton stops training at the epoch it is decided.
It then recommends n_states and a rejection budget (max_candidates) for `--count` kept automata.

The default data keeps all 1,000 training sequences but cuts them to 20 steps (5x cheaper per Adam
step; the preset's check does the same): with only 200 sequences the networks overfit (validation
loss climbs) and even 2-state automata were not fitted in 35,000 steps. `--threads` (default 1, as in
the calibration runs, made on the PyTorch path where more threads were ten times slower on a shared
2-core machine) sets the training threads. The default run (~8 minutes on that path) is a quick look;
mlds-ds3.toml was set from longer runs, one process per n_states:

    .venv/bin/python benchmarks/calibrate_ds3.py                                   # ~8 min, 2 cores
    .venv/bin/python benchmarks/calibrate_ds3.py --n-states 2 --automata 6 --epochs 450     # ~4 min
    .venv/bin/python benchmarks/calibrate_ds3.py --n-states 3 --automata 3 --minutes 14
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np

from mlc import tasks, work
from mlc.train import LearnabilitySettings, TrainConfig, check_learnability, keep_freed_memory


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-states", default="2,3", help="comma-separated state counts")
    p.add_argument("--automata", type=int, default=3, help="automata per n_states")
    p.add_argument("--networks", type=int, default=2, help="reference networks per automaton")
    p.add_argument("--threshold", type=float, default=0.99, help="validation bit accuracy that fits")
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=50)
    p.add_argument("--length", type=int, default=20)
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget; sets the epochs")
    p.add_argument("--epochs", type=int, default=0, help="epoch budget (0: from --minutes)")
    p.add_argument("--seed", type=int, default=20260103, help="automata seed")
    p.add_argument("--data-seed", type=int, default=1)
    p.add_argument("--count", type=int, default=100, help="kept automata the preset wants")
    p.add_argument("--target", type=float, default=0.5, help="kept fraction an n_states must reach")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def _data(args: argparse.Namespace, n_states: list[int]) -> tuple[list[str], tasks.SharedData]:
    """Shared inputs; targets keyed `n<S>:RandomAutomaton-<k>` so equal k with other S do not clash."""
    spec = tasks.DataSpec(seed=args.data_seed, n_train=args.n_train, n_val=args.n_val, length=args.length)
    train, val = tasks.draw_inputs(spec)
    autos = {f"n{s}:RandomAutomaton-{k}": tasks.random_automaton(k, seed=args.seed, n_states=s)
             for s in n_states for k in range(args.automata)}
    data = tasks.SharedData(spec, train, val, {n: a.simulate(train) for n, a in autos.items()},
                            {n: a.simulate(val) for n, a in autos.items()})
    return list(autos), data


def _probe_epoch_seconds(names: list[str], data: tasks.SharedData, args: argparse.Namespace) -> float:
    settings = LearnabilitySettings(networks=args.networks, epochs=1, threshold=args.threshold)
    start = time.perf_counter()
    check_learnability(names, data, settings, TrainConfig())
    return time.perf_counter() - start


def _printer(names: list[str], epochs: int) -> Callable[[int, tuple[bool, ...]], None]:
    """Progress: a line when an automaton is kept, and a heartbeat every tenth of the budget."""
    start, seen = time.perf_counter(), [False] * len(names)

    def show(done: int, kept: tuple[bool, ...]) -> None:
        for i, k in enumerate(kept):
            if k and not seen[i]:
                seen[i] = True
                print(f"  epoch {done}: {names[i]} kept", flush=True)
        if done % max(1, epochs // 10) == 0:
            print(f"  epoch {done}/{epochs}, {time.perf_counter() - start:.0f} s, {sum(seen)} kept",
                  flush=True)

    return show


def _wilson_lower(kept: int, n: int, z: float = 1.0) -> float:
    """Lower end of the Wilson score interval of a kept fraction: a cautious pass rate."""
    if n == 0:
        return 0.0
    p = kept / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def _budget(count: int, rate: float) -> int:
    """Candidates to try for `count` passes at pass rate `rate`: mean plus three standard deviations
    of the negative binomial, plus 10% for the uncertainty of the rate itself."""
    mean = count / rate
    sd = math.sqrt(count * (1 - rate)) / rate
    return math.ceil(1.1 * (mean + 3 * sd))


def main() -> None:
    args = _args()
    work.set_training_threads(args.threads)
    keep_freed_memory()  # as `mlc run` does
    n_states = [int(s) for s in args.n_states.split(",")]
    names, data = _data(args, n_states)
    steps_per_epoch = math.ceil(args.n_train / 32)
    epochs = args.epochs
    if not epochs:
        per_epoch = _probe_epoch_seconds(names, data, args)
        epochs = max(1, int(args.minutes * 60 / per_epoch))
        print(f"probe: {per_epoch:.2f} s per epoch for {len(names) * args.networks} networks")
    print(f"data: {args.n_train} train / {args.n_val} val sequences of {args.length} steps; "
          f"{len(names)} automata x {args.networks} networks; budget {epochs} epochs = "
          f"{epochs * steps_per_epoch} Adam steps; threshold {args.threshold}", flush=True)
    settings = LearnabilitySettings(networks=args.networks, epochs=epochs, threshold=args.threshold)
    start = time.perf_counter()
    report = check_learnability(names, data, settings, TrainConfig(), on_epoch=_printer(names, epochs))
    print(f"trained in {time.perf_counter() - start:.0f} s\n")
    for v in report.verdicts:
        print(f"  {v.task:26s} {'kept' if v.kept else 'rejected':8s} epochs {v.epochs_run:5d}  "
              f"best val acc {v.best_val_accuracy:.4f}  loss {v.best_val_loss:.4f}")
    print()
    checkpoints = sorted({max(1, epochs // 4), max(1, epochs // 2), epochs})
    print("n_states | kept by epoch " + " / ".join(map(str, checkpoints))
          + " | epochs to keep (kept ones) | best val acc (median, min)")
    rates: dict[int, tuple[int, int]] = {}
    for s in n_states:
        vs = [v for v in report.verdicts if v.task.startswith(f"n{s}:")]
        kept_at = [sum(v.kept and v.epochs_run <= c for v in vs) / len(vs) for c in checkpoints]
        to_keep = sorted(v.epochs_run for v in vs if v.kept)
        accs = np.array([v.best_val_accuracy for v in vs])
        rates[s] = (sum(v.kept for v in vs), len(vs))
        print(f"{s:8d} | " + " / ".join(f"{k:.0%}" for k in kept_at)
              + f" | {to_keep or '-'} | {np.median(accs):.3f}, {accs.min():.3f}")
    _recommend(rates, args, epochs)


def _recommend(rates: dict[int, tuple[int, int]], args: argparse.Namespace, epochs: int) -> None:
    good = [s for s, (k, n) in rates.items() if k / n >= args.target]
    print()
    if not good:
        print(f"no n_states reached a kept fraction of {args.target:.0%} in {epochs} epochs: raise the "
              "epoch budget (--epochs/--minutes) or try fewer states before choosing")
        return
    s = max(good)
    kept, n = rates[s]
    rate = max(_wilson_lower(kept, n), 0.05)
    print(f"recommend n_states = {s} (kept {kept}/{n}; cautious pass rate {rate:.2f}), learnability "
          f"epochs = {epochs} on this data, max_candidates = {_budget(args.count, rate)} for "
          f"count = {args.count}")


if __name__ == "__main__":
    main()
