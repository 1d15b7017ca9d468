"""How soon the server catches a host that cheats on a fraction p of its units, and what the checking
costs: a Monte Carlo simulation driving the validator's own policy (`segments_to_replay`, which the
validator calls for every result, and `TRUSTED_AFTER`, the valid results that make a host trusted).

A cheating unit falsifies `--falsified` of its `--segments` segments (1: the cheapest cheat that still
changes what was trained, e.g. poisoning one segment; `--segments`: training all of it on other
targets). Any replayed falsified segment catches the host, which is then untrusted and gets no more
work. Each replayed segment fails exactly when falsified: the cheating-host tests
(`tests/server/test_cheating_hosts.py`) show that for each kind of cheat on real networks.

Printed per p: the probability that the host is caught within n units, the expected number of its
cheating units that passed before (the dataset's exposure, which an untrusted host's unassimilated
results do not add to), and beside it the server's replay cost (a fraction of the training) and the
replication rate BOINC-style replicas would need for the same catch chance per cheating unit.

    python benchmarks/catch_probability.py [--segments 4] [--falsified 1] [--trials 20000]
"""

from __future__ import annotations

import argparse
import random

from mlc.coordinator import TRUSTED_AFTER, segments_to_replay


def simulate(p: float, n: int, segments: int, falsified: int, rng: random.Random) -> tuple[int | None, int]:
    """One host's first `n` units: (the unit it was caught at, or None; its cheating units that passed)."""
    passed = 0
    for unit in range(n):  # every unit before a catch was valid: `unit` valid results so far
        cheats = rng.random() < p
        bad = set(rng.sample(range(segments), falsified)) if cheats else set()
        chosen = segments_to_replay(segments, unit < TRUSTED_AFTER, randbelow=rng.randrange)
        if bad & set(chosen):
            return unit, passed
        passed += cheats
    return None, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--falsified", type=int, default=1)
    parser.add_argument("--trials", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    horizons = (10, 100, 1000)
    k, f = args.segments, args.falsified
    print(f"{k} segments per unit, {f} falsified per cheating unit; trusted after {TRUSTED_AFTER} valid "
          f"results; {args.trials} simulated hosts per row")  # fmt: skip
    head = "".join(f"  caught<= {n:<5}" for n in horizons)
    print(f"{'p':>6}{head}  cheating units passed (mean)")
    for p in (0.01, 0.05, 0.1, 0.25, 1.0):
        caught_at, passed = [], []
        for _ in range(args.trials):
            at, ok = simulate(p, max(horizons), k, f, rng)
            caught_at.append(at)
            passed.append(ok)
        probs = "".join(
            f"  {sum(a is not None and a < n for a in caught_at) / args.trials:>12.3f}" for n in horizons
        )
        print(f"{p:>6.2f}{probs}  {sum(passed) / args.trials:>13.2f}")
    honest = {
        n: sum(len(segments_to_replay(k, u < TRUSTED_AFTER)) for u in range(n)) / (n * k) for n in horizons
    }
    print("\nserver's replay cost for an honest host, as a fraction of its training: "
          + ", ".join(f"{c:.1%} over {n} units" for n, c in honest.items()))
    print(f"replication for the same catch chance per cheating unit ({f}/{k}): {f / k:.0%} of units trained "
          "twice, on volunteers' machines, and only between hosts of one kernel class")  # fmt: skip


if __name__ == "__main__":
    main()
