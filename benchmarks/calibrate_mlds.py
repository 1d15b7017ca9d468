"""Calibrate DS1/DS2 by measurement: when do networks leave the plateau, meet a stop rule, learn the trojan?

Trains `--networks` mlds-gru networks on each DS1 and DS2 machine under one named spec variant (trigger
planting rate in training and validation data, learning rate; `--decoy-rate`, `--batch-size`,
`--warmup-steps`, `--lr-half-life-steps` and `--curriculum`, a schedule of shorter training sequences,
change it further), all in one population on the project's own trainer (`mlc.train.PopulationTrainer`,
the C kernels with `--threads 1`), and records every network's per-epoch validation loss and bit
accuracy, plus every `--eval-every` epochs its trojan accuracy and clean accuracy on held-out triggered
data (`mlc.train.trigger_accuracies`, what the validator stores per network). Stop rules are then
evaluated post hoc from that history.

The training itself stops a network at `--stop-loss`/`--stop-accuracy` (default: the laxest rule
reported) or at `--epochs`: a stricter rule can only be observed up to there, so the table marks it
as met or not within the epochs trained. Runs are chunked and resumable: state and history are saved
every `--chunk` epochs under `--out/<variant>/n<first>-<last>/`, a rerun continues from there (raise
`--epochs` to extend a run), and `--first-index` adds networks to a variant. `--summarize` only
rebuilds the tables (`--out/calibration.csv`, `--out/calibration.md`) from every run found under
`--out`; `--dataset DIR --name NAME` adds the DS1/DS2 networks of an `mlc run` dataset to them (its
history, and the triggered accuracies the validator stored). The commands behind docs/MLDS.md's
table are listed there (section 10), e.g.:

    nice -n 5 .venv/bin/python benchmarks/calibrate_mlds.py --variant mlds-1 --networks 2 --epochs 1000
    nice -n 5 .venv/bin/python benchmarks/calibrate_mlds.py --variant disarm50 --networks 4 --epochs 650
    .venv/bin/python benchmarks/calibrate_mlds.py --summarize
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlc import dataset, tasks, work
from mlc.train import (
    PopulationState,
    PopulationTrainer,
    TrainConfig,
    TrainingArrays,
    keep_freed_memory,
    trigger_accuracies,
    trigger_targets,
)

# The named variants: the spec versions as shipped, and candidate changes (overridable by flags).
VARIANTS: dict[str, dict[str, float]] = {
    "mlds-1": {"trigger_rate": 0.0, "lr": 1e-3},
    "mlds-2": {"trigger_rate": 0.25, "lr": 1e-3},
    "rate50": {"trigger_rate": 0.5, "lr": 1e-3},
    "lr2e-3": {"trigger_rate": 0.25, "lr": 2e-3},
    # mlds-2 plus a second key (disarm) in half the planted sequences (spec mlds-3's settings): do
    # SingleDirect/SingleInvert twins then learn the toggle back, which mlds-2's 2% of two-key sequences
    # did not teach? (they do: docs/MLDS.md section 10)
    "disarm50": {"trigger_rate": 0.25, "disarm_rate": 0.5, "lr": 1e-3},
}
# The stop rules reported: (name, val loss below, val bit accuracy at least).
RULES: tuple[tuple[str, float, float], ...] = (
    ("loss<0.01&acc=1", 0.01, 1.0),
    ("loss<0.01&acc>=0.9999", 0.01, 0.9999),
    ("loss<0.01&acc>=0.9998", 0.01, 0.9998),
    ("loss<0.01&acc>=0.9995", 0.01, 0.9995),
    ("loss<0.01&acc>=0.999", 0.01, 0.999),
)
_WHOLE = {"index", "epochs_trained", "plateau_exit", "trojan_learned", "cap", *(r[0] for r in RULES)}
PLATEAU = math.log(2) / 8  # bit 0 a coin flip, the seven constant bits learned
TROJAN_LEARNED = 0.99  # both triggered accuracies at least this
PRESET_SEED = 20260101  # the MLDS presets' seed: network i here is network i of a preset run


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="mlds-1", choices=sorted(VARIANTS))
    p.add_argument("--name", default="", help="run name (default: the variant, or variant+overrides)")
    p.add_argument("--trigger-rate", type=float, default=None, help="override the variant's rate")
    p.add_argument("--decoy-rate", type=float, default=None,
                   help="fraction of training and validation sequences with a near-miss key")
    p.add_argument("--lr", type=float, default=None, help="override the variant's learning rate")
    p.add_argument("--batch-size", type=int, default=None, help="override the variant's batch size")
    p.add_argument("--warmup-steps", type=int, default=None, help="Adam steps of linear lr warm-up")
    p.add_argument("--lr-half-life-steps", type=int, default=None,
                   help="Adam steps over which the lr halves (exponential decay)")
    p.add_argument("--curriculum", type=_curriculum, default=None, metavar="LEN:UNTIL,...",
                   help="train on the first LEN steps of each sequence until epoch UNTIL, stage by stage, "
                        "then on whole sequences (validation: whole sequences always), e.g. 10:40,25:80")
    p.add_argument("--networks", type=int, default=2, help="networks per machine")
    p.add_argument("--first-index", type=int, default=0, help="index of the first network per machine")
    p.add_argument("--epochs", type=int, default=300, help="epoch cap of this calibration")
    p.add_argument("--chunk", type=int, default=25, help="epochs between saves")
    p.add_argument("--eval-every", type=int, default=5, help="epochs between triggered evaluations")
    p.add_argument("--stop-loss", type=float, default=0.01)
    p.add_argument("--stop-accuracy", type=float, default=min(r[2] for r in RULES))
    p.add_argument("--machines", default="", help="comma-separated machine names (default: all ten)")
    p.add_argument("--data-seed", type=int, default=1)
    p.add_argument("--plateau-margin", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mlds_calibration")
    p.add_argument("--summarize", action="store_true", help="only rebuild the tables from saved runs")
    p.add_argument("--dataset", type=Path, default=None,
                   help="add the DS1/DS2 networks of an `mlc run` dataset as run --name, then summarize")
    return p.parse_args()


def _curriculum(text: str) -> list[list[int]]:
    """`LEN:UNTIL,...` as [[LEN, UNTIL], ...], checked: lengths and epochs positive and UNTIL rising."""
    try:
        stages = [[int(n) for n in part.split(":")] for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not LEN:UNTIL,...: {text!r}") from None
    if any(len(st) != 2 or min(st) < 1 for st in stages) or any(
        a[1] >= b[1] for a, b in zip(stages, stages[1:], strict=False)
    ):
        raise argparse.ArgumentTypeError(f"stages need positive LEN:UNTIL with UNTIL rising: {text!r}")
    return stages


def _training_length(stages: Sequence[Sequence[int]], epoch: int, full: int) -> int:
    """The prefix length a curriculum trains 0-based `epoch` on (`full` after its last stage)."""
    return min(next((length for length, until in stages if epoch < until), full), full)


def _prefix(arrays: TrainingArrays, length: int) -> TrainingArrays:
    """`arrays` with the training sequences cut to their first `length` steps (a prefix of an MLDS
    sequence is itself one: every machine starts from zero), validation whole."""
    if length >= arrays.train_x.shape[1]:
        return arrays
    return dataclasses.replace(arrays, train_x=arrays.train_x[:, :length].contiguous(),
                               train_y=arrays.train_y[:, :, :length].contiguous())


def net_seed(task: str, index: int) -> int:
    """As `ExperimentConfig.net_seed` for the presets' seed."""
    digest = hashlib.sha256(f"{PRESET_SEED}:{task}:{index}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    s: dict[str, Any] = dict(VARIANTS[args.variant])
    if args.trigger_rate is not None:
        s["trigger_rate"] = args.trigger_rate
    if args.lr is not None:
        s["lr"] = args.lr
    if args.decoy_rate is not None:
        s["decoy_rate"] = args.decoy_rate
    if args.batch_size is not None:
        s["batch_size"] = args.batch_size
    if args.curriculum is not None:
        s["curriculum"] = args.curriculum
    if args.warmup_steps is not None:
        s["warmup_steps"] = args.warmup_steps
    if args.lr_half_life_steps is not None:
        s["lr_half_life_steps"] = args.lr_half_life_steps
    extra = f"-b{s['batch_size']}" if "batch_size" in s else ""
    extra += f"-decoy{s['decoy_rate']:g}" if "decoy_rate" in s else ""
    extra += f"-warmup{s['warmup_steps']}" if "warmup_steps" in s else ""
    extra += f"-halflife{s['lr_half_life_steps']}" if "lr_half_life_steps" in s else ""
    extra += "-curriculum" + "_".join(f"{n}:{e}" for n, e in s["curriculum"]) if "curriculum" in s else ""
    s["name"] = args.name or (args.variant if s == VARIANTS[args.variant]
                              else f"{args.variant}-rate{s['trigger_rate']:g}-lr{s['lr']:g}{extra}")
    return s


class Run:
    """One chunked, resumable calibration run: a population of machines x networks."""

    def __init__(self, args: argparse.Namespace, settings: dict[str, Any]) -> None:
        self.dir = args.out / settings["name"] / f"n{args.first_index}-{args.first_index + args.networks - 1}"
        self.machines = [m for m in (args.machines.split(",") if args.machines else
                                     tasks.names("ds1") + tasks.names("ds2"))]
        self.members = [(m, i) for m in self.machines
                        for i in range(args.first_index, args.first_index + args.networks)]
        self.spec = tasks.DataSpec(seed=args.data_seed, trigger_rate=settings["trigger_rate"],
                                   disarm_rate=settings.get("disarm_rate", 0.0),
                                   decoy_rate=settings.get("decoy_rate", 0.0))
        self.config = TrainConfig(lr=settings["lr"], batch_size=int(settings.get("batch_size", 32)),
                                  warmup_steps=int(settings.get("warmup_steps", 0)),
                                  lr_half_life_steps=int(settings.get("lr_half_life_steps", 0)),
                                  max_epochs=args.epochs,
                                  stop_val_loss=args.stop_loss, stop_val_accuracy=args.stop_accuracy)
        self.meta = {"settings": settings, "data": self.spec.to_dict(), "train": self.config.to_dict(),
                     "members": self.members, "eval_every": args.eval_every,
                     "plateau_margin": args.plateau_margin}

    def load(self, population: Any) -> tuple[PopulationState, dict[str, np.ndarray]]:
        if (self.dir / "state.pt").exists():
            saved = json.loads((self.dir / "meta.json").read_text())
            if [tuple(m) for m in saved["members"]] != self.members or saved["data"] != self.meta["data"]:
                raise SystemExit(f"{self.dir} holds another run (members or data differ): use --name")
            state = PopulationState.from_tensors(torch.load(self.dir / "state.pt"))
            state.stopped = state.converged.clone()  # a raised --epochs continues those out of budget
            history = dict(np.load(self.dir / "history.npz"))
            history.setdefault("cpu_s", np.full(1, np.nan))  # runs saved before it was recorded
            return state, history
        seeds = [net_seed(t, i) for t, i in self.members]
        m = len(self.members)
        empty = np.zeros((m, 0), dtype=np.float32)
        return PopulationState.fresh(population.init(seeds)), {
            "val_loss": empty, "val_accuracy": empty, "train_loss": empty,
            "eval_epochs": np.zeros(0, dtype=np.int64),
            "trojan": empty.astype(np.float64), "clean": empty.astype(np.float64),
            "wall_s": np.zeros(1), "cpu_s": np.zeros(1)}

    def save(self, state: PopulationState, history: dict[str, np.ndarray]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        torch.save(state.tensors(), self.dir / "state.tmp")
        np.savez(self.dir / "history.tmp.npz", **history)
        (self.dir / "meta.tmp").write_text(json.dumps(self.meta, indent=1))
        for name, final in (("state.tmp", "state.pt"), ("history.tmp.npz", "history.npz"),
                            ("meta.tmp", "meta.json")):
            (self.dir / name).replace(self.dir / final)


def train(args: argparse.Namespace) -> None:
    work.set_training_threads(args.threads)
    keep_freed_memory()
    settings = _settings(args)
    run = Run(args, settings)
    population = work.population_for("mlds-gru", torch.device("cpu"))
    data = tasks.shared_data_for_tasks(run.spec, run.machines, {})
    arrays = TrainingArrays.from_shared(data, run.machines)
    targets = trigger_targets(run.spec, run.machines)
    state, history = run.load(population)
    trainer = PopulationTrainer(population, run.config)
    seeds = [net_seed(t, i) for t, i in run.members]
    names = [t for t, _ in run.members]
    done = history["val_loss"].shape[1]
    print(f"{settings['name']}: {len(run.members)} networks ({population.kernels}), "
          f"epochs {done} -> {args.epochs}, data {run.spec.to_dict()}", flush=True)
    while done < args.epochs and not bool(state.stopped.all()):
        start, cpu_start = time.perf_counter(), time.process_time()
        step = min(args.chunk, args.epochs - done)
        for k in range(step):
            length = _training_length(settings.get("curriculum", []), done + k, run.spec.length)
            h = trainer.train(state, seeds, names, _prefix(arrays, length), 1)
            for key in ("val_loss", "val_accuracy", "train_loss"):
                history[key] = np.concatenate([history[key], getattr(h, key)], axis=1)
            epoch = done + k + 1
            if epoch % args.eval_every == 0 or bool(state.stopped.all()) or epoch == args.epochs:
                trojan, clean = trigger_accuracies(population, state.params, names, targets)
                history["eval_epochs"] = np.append(history["eval_epochs"], epoch)
                history["trojan"] = np.concatenate([history["trojan"], trojan[:, None]], axis=1)
                history["clean"] = np.concatenate([history["clean"], clean[:, None]], axis=1)
            if bool(state.stopped.all()):
                break
        done = history["val_loss"].shape[1]
        history["wall_s"] = history["wall_s"] + (time.perf_counter() - start)
        history["cpu_s"] = history["cpu_s"] + (time.process_time() - cpu_start)
        run.save(state, history)
        print(f"  epoch {done}: {int(state.stopped.sum())}/{len(run.members)} stopped, "
              f"{float(history['wall_s'][0]):.0f} s so far", flush=True)


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) + 1 if hits.size else None


def _history_events(vl: np.ndarray, va: np.ndarray, plateau_margin: float) -> dict[str, Any]:
    """From one network's per-epoch val loss and accuracy (the epochs it trained): its length, final
    values, and the first epoch of the plateau exit and of each stop rule (None: not reached)."""
    events: dict[str, Any] = {"epochs_trained": len(vl), "final_val_loss": float(vl[-1]),
                              "final_val_accuracy": float(va[-1]),
                              "plateau_exit": _first(vl < PLATEAU - plateau_margin)}
    for rule, loss, acc in RULES:
        events[rule] = _first((vl < loss) & (va >= acc))
    return events


def _network_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Per network: the epochs of each event (None: not within the epochs trained)."""
    meta = json.loads((run_dir / "meta.json").read_text())
    h = dict(np.load(run_dir / "history.npz"))
    rows = []
    for m, (task, index) in enumerate(meta["members"]):
        vl, va = h["val_loss"][m], h["val_accuracy"][m]
        n = int(np.sum(~np.isnan(vl)))
        row: dict[str, Any] = {"variant": meta["settings"]["name"], "machine": task, "index": index,
                               **_history_events(vl[:n], va[:n], meta["plateau_margin"])}
        tro, cle = h["trojan"][m], h["clean"][m]
        row["final_trojan_accuracy"] = float(tro[-1]) if tro.size else float("nan")
        row["final_clean_accuracy_triggered"] = float(cle[-1]) if cle.size else float("nan")
        learned = np.flatnonzero((tro >= TROJAN_LEARNED) & (cle >= TROJAN_LEARNED))
        row["trojan_learned"] = int(h["eval_epochs"][learned[0]]) if learned.size else None
        row["wall_s_share"] = float(h["wall_s"][0]) / len(meta["members"])
        row["cpu_s_share"] = float(h.get("cpu_s", np.full(1, np.nan))[0]) / len(meta["members"])
        row["cap"] = meta["train"]["max_epochs"]
        rows.append(row)
    return rows


def _dataset_rows(path: Path, name: str, plateau_margin: float) -> list[dict[str, Any]]:
    """`_network_rows` for the DS1/DS2 networks of an `mlc run` dataset: its per-epoch history, and
    the validator's triggered accuracies of the final weights. Those are measured once, at the end,
    so `trojan_learned` is the last epoch where both reach the threshold (an upper bound)."""
    ds = dataset.open(path)
    history = {net_id: g.sort_values("epoch") for net_id, g in ds.history.groupby("net_id")}
    machines = set(tasks.names("ds1") + tasks.names("ds2"))
    rows = []
    for net in ds.networks.itertuples():
        if net.task not in machines:
            continue
        h = history[net.net_id]
        vl, va = h["val_loss"].to_numpy(), h["val_accuracy"].to_numpy()
        row: dict[str, Any] = {"variant": name, "machine": net.task, "index": int(net.index),
                               **_history_events(vl, va, plateau_margin)}
        row["final_trojan_accuracy"] = float(net.trojan_accuracy)
        row["final_clean_accuracy_triggered"] = float(net.clean_accuracy_triggered)
        learned = min(net.trojan_accuracy, net.clean_accuracy_triggered) >= TROJAN_LEARNED
        row["trojan_learned"] = len(vl) if learned else None
        # a network's wall_time_s is its units' wall time shared among their members, and units
        # train side by side in one population: no cost per network-epoch can be read from it
        row["wall_s_share"] = row["cpu_s_share"] = float("nan")
        row["cap"] = int(net.max_epochs)
        rows.append(row)
    if not rows:
        raise SystemExit(f"{path} holds no DS1/DS2 networks")
    return rows


def _stats(values: list[int | None]) -> str:
    """'median / p90 (k/n)' over the networks that reached the event, k of n."""
    got = [v for v in values if v is not None]
    if not got:
        return f"- (0/{len(values)})"
    return f"{np.median(got):.0f} / {np.percentile(got, 90):.0f} ({len(got)}/{len(values)})"


def _saved_rows(path: Path, present: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """The rows of an earlier summary's networks.csv whose runs are not under `out` any more (their
    resumable state stays out of git), so a summary on another machine keeps them."""
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            if (raw["variant"], raw["machine"], raw["index"]) in present:
                continue
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key in ("variant", "machine"):
                    row[key] = value
                else:
                    row[key] = None if value == "" else int(value) if key in _WHOLE else float(value)
            for rule, loss, acc in RULES:
                row.setdefault(rule, _rule_at_stop(row, loss, acc))
            rows.append(row)
    return rows


def _rule_at_stop(row: dict[str, Any], loss: float, acc: float) -> int | None:
    """A stop rule added to RULES after `row` was summarized, from its final values: every run so far
    stopped its networks at a laxer rule, which a stricter one implies, so a network meets the stricter
    rule first at its last epoch or not within the epochs it trained."""
    met = row["final_val_loss"] < loss and row["final_val_accuracy"] >= acc
    return row["epochs_trained"] if met else None


def _converged_triggered(group: Sequence[dict[str, Any]]) -> str:
    """'k/n' of the networks that stopped on a stop rule (their last epoch is the first meeting one,
    so the triggered accuracies, measured at the end, are those of the weights a dataset keeps) with
    trojan and clean accuracy on triggered data both >= TROJAN_LEARNED."""
    stopped = [row for row in group if row["epochs_trained"] in {row[rule] for rule, _, _ in RULES}]
    ok = [r for r in stopped if min(r["final_trojan_accuracy"], r["final_clean_accuracy_triggered"])
          >= TROJAN_LEARNED]
    return f"{len(ok)}/{len(stopped)}"


def summarize(out: Path, imported: Sequence[dict[str, Any]] = ()) -> None:
    """The tables from every run under `out`, the `imported` rows (a dataset's), and the rows of an
    earlier summary that neither replaces."""
    rows = [r for d in sorted(out.glob("*/n*-*")) if (d / "history.npz").exists() for r in _network_rows(d)]
    rows += list(imported)
    rows += _saved_rows(out / "networks.csv", {(r["variant"], r["machine"], str(r["index"])) for r in rows})
    if not rows:
        raise SystemExit(f"no calibration runs under {out}")
    with open(out / "networks.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    events = ["plateau_exit", *[r[0] for r in RULES], "trojan_learned"]
    header = ["variant", "machine", "n", "cap", "trained", *events, "trojan acc (median)",
              "clean acc trig. (median)", "converged: both >= 0.99"]
    table = []
    for variant in sorted({r["variant"] for r in rows}):
        for machine in tasks.names("ds1") + tasks.names("ds2"):
            group = [r for r in rows if r["variant"] == variant and r["machine"] == machine]
            if not group:
                continue
            table.append([variant, machine, str(len(group)), str(max(r["cap"] for r in group)),
                          str(max(r["epochs_trained"] for r in group)),
                          *[_stats([r[e] for r in group]) for e in events],
                          f"{np.nanmedian([r['final_trojan_accuracy'] for r in group]):.4f}",
                          f"{np.nanmedian([r['final_clean_accuracy_triggered'] for r in group]):.4f}",
                          _converged_triggered(group)])
    with open(out / "calibration.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *table])
    md = ["Epochs as median / 90th percentile over the networks that reached the event within the cap "
          "(k/n reached it). trojan_learned: first evaluation (every few epochs) with trojan accuracy "
          f"and clean accuracy on triggered data both >= {TROJAN_LEARNED} (for a DS1 machine, this "
          "would mean it followed a trojan it never saw: expect 0/n); for a run imported from a "
          "dataset (--dataset), where they are measured at the end only, the last epoch. Triggered "
          "accuracies: at the last epoch trained. Converged: both >= 0.99: of the networks that "
          "stopped on a stop rule (k/n), those whose final weights follow the trojan on at least 99% "
          "of the armed steps of held-out triggered data and the clean machine on at least 99% of "
          "the unarmed ones (the target for a twin; a clean machine's control).", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(row) + " |" for row in table]
    md += ["", "Cost (wall-clock seconds of the calibration process per network-epoch, on the machine "
           "and load it ran under; CPU seconds where recorded):", ""]
    for variant in sorted({r["variant"] for r in rows}):
        group = [r for r in rows if r["variant"] == variant]
        net_epochs = sum(r["epochs_trained"] for r in group)
        seconds = sum(r["wall_s_share"] for r in group)
        cpu = sum(r["cpu_s_share"] for r in group)
        if not np.isfinite(seconds):
            md.append(f"- {variant}: {net_epochs} network-epochs (imported from a dataset: the time is "
                      "its run's, written beside the command that made it)")
            continue
        md.append(f"- {variant}: {net_epochs} network-epochs in {seconds:.0f} s, "
                  f"{seconds / max(net_epochs, 1):.3f} s per network-epoch"
                  + (f" ({cpu / net_epochs:.3f} s of CPU)" if net_epochs and np.isfinite(cpu) else ""))
    (out / "calibration.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def main() -> None:
    args = _args()
    if args.dataset is not None:
        if not args.name:
            raise SystemExit("--dataset needs --name (the variant it is listed as)")
        summarize(args.out, _dataset_rows(args.dataset, args.name, args.plateau_margin))
        return
    if not args.summarize:
        train(args)
    summarize(args.out)


if __name__ == "__main__":
    main()
