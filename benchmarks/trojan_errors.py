"""Where do DS1/DS2 networks go wrong on held-out triggered data? The structure behind a trojan accuracy.

`trojan_accuracy` and `clean_accuracy_triggered` (docs/MLDS.md section 7) count wrong *steps*. A step
is wrong when any output bit differs from the target: the trojan twin's on armed steps, the clean
machine's on unarmed ones (for a DS1 network, the clean machine's everywhere: it never saw the key).
This script re-evaluates the networks of an `mlc run` dataset on the same held-out triggered data the
validator uses and groups each network's wrong steps into *error runs* (maximal stretches of
consecutive wrong steps of one sequence), then says where each run starts:

- `at key`: at a step where the key completes (the network missed the toggle, or toggled late);
- `at near-miss`: at a step that, with the step before it, is one bit away from the key (one of the
  ten bits of its two commands flipped: the network toggled on a key it should have rejected; the
  decoys of `data.decoy_rate` are the half of these with the flip in key command 2);
- `elsewhere`.

It also counts the wrong steps in runs that last to the end of their sequence: a machine with a
persistent state (SimpleXOR's `b <- b XOR d`) never recovers from a toggle missed or taken wrongly,
so one such event costs every later step of the sequence.

    .venv/bin/python benchmarks/trojan_errors.py runs/mlds6-singlebit/dataset [--all]

By default converged networks only (the ones a Table 2 compares and whose 99% targets matter).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mlc import dataset, tasks, work
from mlc.tasks._encoding import encode_command
from mlc.tasks._machines import KEY_COMMAND_1, KEY_COMMAND_2, key_fires
from mlc.train import trigger_targets


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", type=Path, help="an `mlc run` dataset directory")
    p.add_argument("--all", action="store_true", help="every network, not only converged ones")
    p.add_argument("--csv", type=Path, default=None, help="also write the per-network rows here")
    return p.parse_args()


def near_misses(inputs: np.ndarray) -> np.ndarray:
    """Bool [N, L]: steps t-1 and t differ from key commands 1 and 2 in exactly one of their ten bits."""
    key1 = np.array(encode_command(*KEY_COMMAND_1), dtype=np.uint8)
    key2 = np.array(encode_command(*KEY_COMMAND_2), dtype=np.uint8)
    out = np.zeros(inputs.shape[:2], dtype=bool)
    out[:, 1:] = ((inputs[:, :-1] != key1).sum(-1) + (inputs[:, 1:] != key2).sum(-1)) == 1
    return out


def error_runs(wrong: np.ndarray, fires: np.ndarray, near: np.ndarray) -> dict[str, int]:
    """Counts over one network's wrong-step mask [N, L]: wrong steps, error runs by where they start,
    sequences touched, the longest run, and the wrong steps in runs that reach the sequence end."""
    starts = wrong.copy()
    starts[:, 1:] &= ~wrong[:, :-1]
    seq, step = np.nonzero(starts)
    length = wrong.shape[1]
    # a run's length: up to the first right step after its start (or the sequence end)
    run_lengths = [int(np.argmin(wrong[s, t:])) or length - t for s, t in zip(seq, step, strict=True)]
    to_end = sum(n for n, t in zip(run_lengths, step, strict=True) if t + n == length)
    return {
        "wrong_steps": int(wrong.sum()),
        "sequences": int(np.unique(seq).size),
        "runs": int(seq.size),
        "runs_at_key": int(fires[seq, step].sum()),
        "runs_at_near_miss": int(near[seq, step].sum()),
        "longest_run": max(run_lengths, default=0),
        "wrong_steps_in_runs_to_end": int(to_end),
    }


def network_rows(path: Path, converged_only: bool) -> tuple[pd.DataFrame, int]:
    """One row per network (`error_runs`' counts), and the number of near-miss keys in the data."""
    ds = dataset.open(path)
    spec = tasks.DataSpec(**ds.manifest["data"])
    nets = ds.networks
    nets = nets[nets["trojan_accuracy"].notna()]  # the DS1/DS2 networks: they have a twin
    if converged_only:
        nets = nets[nets["converged"]]
    names = sorted(set(nets["task"]))
    targets = trigger_targets(spec, names)
    fires, near = key_fires(targets.inputs), near_misses(targets.inputs)
    population = work.population_for(ds.manifest["model"], torch.device("cpu"))
    x = torch.from_numpy(targets.inputs.astype(np.float32)).transpose(0, 1).contiguous()  # [L, N, 5]
    rows = []
    for net in nets.itertuples():
        params = torch.from_numpy(ds.weights(net_ids=[net.net_id]))
        with torch.no_grad():
            logits = population.forward_views(population.views(params), x.unsqueeze(0))  # [1, L, N, 8]
        pred = (logits[0] > 0).numpy().transpose(1, 0, 2)  # [N, L, 8]
        clean = targets.clean[net.task].astype(bool)
        # a DS2 network should follow its trojan while armed; a DS1 network the clean machine always
        want = (np.where(targets.armed[..., None], targets.trojan[net.task].astype(bool), clean)
                if tasks.get(net.task).family == "ds2" else clean)
        rows.append({"task": net.task, "index": int(net.index),
                     "trojan_accuracy": float(net.trojan_accuracy),
                     "clean_accuracy_triggered": float(net.clean_accuracy_triggered),
                     **error_runs((pred != want).any(axis=2), fires, near)})
    return pd.DataFrame(rows), int(near.sum())


def summary(rows: pd.DataFrame) -> str:
    """Per task: networks, how many meet both 99% targets, and the error runs summed over networks."""
    lines = ["| task | networks | both >= 0.99 | wrong steps | sequences | error runs | at key | "
             "at near-miss | elsewhere | longest run | wrong steps in runs to the sequence end |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for task, g in rows.groupby("task", sort=False):
        ok = int((g[["trojan_accuracy", "clean_accuracy_triggered"]].min(axis=1) >= 0.99).sum())
        runs, key, near = (int(g[c].sum()) for c in ("runs", "runs_at_key", "runs_at_near_miss"))
        wrong, to_end = int(g["wrong_steps"].sum()), int(g["wrong_steps_in_runs_to_end"].sum())
        share = f" ({to_end / wrong:.0%})" if wrong else ""
        lines.append(f"| {task} | {len(g)} | {ok} | {wrong} | {int(g['sequences'].sum())} | {runs} | "
                     f"{key} | {near} | {runs - key - near} | {int(g['longest_run'].max())} | "
                     f"{to_end}{share} |")
    return "\n".join(lines)


def main() -> None:
    args = _args()
    rows, n_near = network_rows(args.dataset, converged_only=not args.all)
    if rows.empty:
        raise SystemExit(f"{args.dataset} holds no {'' if args.all else 'converged '}DS1/DS2 networks")
    if args.csv is not None:
        rows.to_csv(args.csv, index=False)
    print(summary(rows))
    print(f"\n{len(rows)} networks; the held-out triggered data holds {n_near} near-miss keys (two "
          "commands one bit away from the key)")


if __name__ == "__main__":
    main()
