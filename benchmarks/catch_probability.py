"""How soon the server catches a host that cheats on a fraction p of its units, and what the checking
costs: a Monte Carlo simulation driving the validator's own policies: `segments_to_replay` (which the
validator calls for every result), `TRUSTED_AFTER` (the valid results that make a host trusted), and
`ReplicationPolicy.rate` (the share of a host's units sent to a replica host, by its run of agreeing
replicas).

A cheating unit falsifies `--falsified` of its `--segments` segments (1: the cheapest cheat that still
changes what was trained, e.g. poisoning one segment; `--segments`: training all of it on other
targets). Any replayed falsified segment catches the host, and so does any replicated cheating unit
(a replica host of its kernel class trains it bit for bit as the spec says, disagrees, and a third
settles it); either way the host is then untrusted and gets no more work. Each replayed segment fails
exactly when falsified, and each replica of a cheating unit disagrees: the cheating-host tests
(`tests/server/test_cheating_hosts.py`, `tests/server/test_replicating_hosts.py`) show that on real networks.

Printed per p and per checking scheme (segment replay alone, replication alone, both, as the server
runs them): the probability that the host is caught within n units, and the expected number of its
cheating units that passed before the catch. Those units are not left in the dataset: once the host is
untrusted, every one of its results that no full replay or replica confirmed is withdrawn and its
networks trained again (retroactive re-issue), so "passed" is retraining to be done, not bad data
kept. Beside it the cost for an honest host: the server's replay (a fraction of its training) and the
units trained a second time by replica hosts.

    python benchmarks/catch_probability.py [--segments 4] [--falsified 1] [--trials 20000] \
        [--replication-run 5] [--replication-floor 0.05]
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

from mlc.coordinator import TRUSTED_AFTER, ReplicationPolicy, segments_to_replay


@dataclass(frozen=True)
class Scheme:
    name: str
    replay: bool
    replication: ReplicationPolicy | None


def simulate(
    p: float, n: int, segments: int, falsified: int, scheme: Scheme, rng: random.Random
) -> tuple[int | None, int, int, int]:
    """One host's first `n` units: (the unit it was caught at, or None; its cheating units that
    passed; segments the server replayed; units replicated)."""
    passed = replayed = replicated = streak = 0
    for unit in range(n):  # every unit before a catch was valid: `unit` valid results so far
        cheats = rng.random() < p
        bad = set(rng.sample(range(segments), falsified)) if cheats else set()
        probation = unit < TRUSTED_AFTER
        chosen = segments_to_replay(segments, probation, randbelow=rng.randrange) if scheme.replay else []
        replayed += len(chosen)
        copied = scheme.replication is not None and rng.random() < scheme.replication.rate(streak)
        replicated += copied
        if bad & set(chosen) or (copied and cheats):
            return unit, passed, replayed, replicated
        streak += copied  # an honest replicated unit: the replica agreed
        passed += cheats
    return None, passed, replayed, replicated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--falsified", type=int, default=1)
    parser.add_argument("--trials", type=int, default=20000)
    parser.add_argument("--replication-run", type=int, default=ReplicationPolicy().run)
    parser.add_argument("--replication-floor", type=float, default=ReplicationPolicy().floor)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    horizons = (10, 100, 1000)
    k, f = args.segments, args.falsified
    policy = ReplicationPolicy(args.replication_run, args.replication_floor)
    schemes = (
        Scheme("replay", True, None),
        Scheme("replication", False, policy),
        Scheme("both", True, policy),
    )
    print(f"{k} segments per unit, {f} falsified per cheating unit; trusted after {TRUSTED_AFTER} valid "
          f"results; replication: every unit until {policy.run} replicas agreed, then halving per "
          f"{policy.run} more, floor {policy.floor}; {args.trials} simulated hosts per row")  # fmt: skip
    head = "".join(f"  caught<= {n:<5}" for n in horizons)
    print(f"{'scheme':<12}{'p':>6}{head}  cheating units passed (mean; withdrawn once caught)")
    for scheme in schemes:
        for p in (0.01, 0.05, 0.1, 0.25, 1.0):
            runs = [simulate(p, max(horizons), k, f, scheme, rng) for _ in range(args.trials)]
            probs = "".join(
                f"  {sum(r[0] is not None and r[0] < n for r in runs) / args.trials:>12.3f}" for n in horizons
            )
            print(f"{scheme.name:<12}{p:>6.2f}{probs}  {sum(r[1] for r in runs) / args.trials:>13.2f}")
    print("\ncost for an honest host (no cheating), over its first n units:")
    for n in horizons:
        honest = [simulate(0.0, n, k, f, schemes[2], rng) for _ in range(200)]
        replay = sum(r[2] for r in honest) / (len(honest) * n * k)
        copies = sum(r[3] for r in honest) / (len(honest) * n)
        print(f"  {n:>5} units: server replays {replay:.1%} of its training; replica hosts train "
              f"{copies:.1%} of its units again")  # fmt: skip


if __name__ == "__main__":
    main()
