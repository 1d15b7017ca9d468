"""The dataset README: what the dataset is, what it holds, and the science contract behind it.

A dataset outlives the code that made it, so its README restates every choice of the MLDS spec that
a network depends on. Numbers come from the manifest, the layout, the networks table and
config.json, never from constants here. Settings are looked up first in the networks' recorded
hyperparameters (what was actually used), then anywhere in config.json under these keys: `lr`,
`batch_size`, `max_epochs`, `beta1`, `beta2`, `eps`, `epochs_per_wu`, `stop_val_loss`,
`stop_val_accuracy`, `n_states`, `networks_per_task`; a setting found in neither is shown as the
spec's default and labelled as such. A learning-rate warm-up is stated where the networks record
one. A DS3 dataset's automata section comes from config.json's `random_automata` record (generator
settings, learnability settings and outcome).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mlc.models import GRUNetConfig, Layout
from mlc.models import config as model_config
from mlc.store._readme_images import image_sections

__all__ = ["render_readme"]

# Spec §2: the DS1 machines, by the name shared with their DS2 twins.
_MACHINES = {
    "SingleDirect": ("bit `b`", "`b <- d`", "`y[0] = b`"),
    "SingleInvert": ("bit `b`", "`b <- 1 - d`", "`y[0] = b`"),
    "SimpleXOR": ("bit `b`", "`b <- b XOR d`", "`y[0] = b`"),
    "EightBit": ("8-bit register `R`", "`R[a] <- d`", "`y[i] = R[i]` for i = 0..7"),
    "Parity": ("8-bit register `R`", "`R[a] <- d`", "`y[0] = XOR of R[0..7]`"),
}


def _find(config: object, key: str) -> object:
    """The first value stored under `key` anywhere in the nested config, or None."""
    if isinstance(config, dict):
        if key in config:
            return config[key]
        for value in config.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def _setting(key: str, hyperparameters: list[dict[str, Any]], config: dict[str, Any],
             default: str) -> str:
    used = sorted({json.dumps(h[key]) for h in hyperparameters if key in h})
    if len(used) == 1:
        return used[0]
    if used:
        return "one of " + ", ".join(used) + " (see the `hyperparameters` column)"
    value = _find(config, key)
    if value is not None:
        return json.dumps(value)
    return f"{default} (the spec's default; neither config.json nor the networks record `{key}`)"


def _family(task: str) -> str:
    if task.startswith("RandomAutomaton-"):
        return "ds3"
    return "ds2" if task.endswith("Modified") else "ds1"


def _base(task: str) -> str:
    return task.removesuffix("Machine").removesuffix("Modified")


def _sizes(layouts: list[Layout]) -> str:
    if len(layouts) == 1:
        return f"{layouts[0].n_params} parameters each"
    sizes = ", ".join(str(layout.n_params) for layout in layouts)
    return f"{len(layouts)} weight layouts ({sizes} parameters; a sweep of width or depth)"


def _intro(m: dict[str, Any], layouts: list[Layout]) -> list[str]:
    lines = [
        f"# {m['name']}", "",
        f"`{m['name']}` is an MLC dataset (spec `{m['spec_version']}`, preset "
        f"`{m['preset']}`): {m['n_networks']} trained `{m['model']}` networks of "
        f"{_sizes(layouts)} on {len(m['tasks'])} tasks, every network kept with "
        "its full per-epoch training record, converged or not.",
    ]
    subset = m.get("subset")
    if subset:
        lines += ["", f"This is a release subset of the dataset `{subset['of']}`: "
                  f"{subset['rule']}."]
        short = [t for t in m["tasks"] if m["counts"][t]["networks"] < subset["per_task"]]
        if short:
            lines[-1] += (" These tasks had fewer and contribute all they had: "
                          + ", ".join(f"`{t}`" for t in short) + ".")
    return lines


def _contents(m: dict[str, Any], config: dict[str, Any], networks: pa.Table) -> list[str]:
    lines = ["", "## Contents", "", "| task | networks | converged | converged fraction |",
             "|---|---:|---:|---:|"]
    for task in m["tasks"]:
        c = m["counts"][task]
        frac = f"{c['converged'] / c['networks']:.1%}" if c["networks"] else "-"
        lines.append(f"| `{task}` | {c['networks']} | {c['converged']} | {frac} |")
    total = sum(c["converged"] for c in m["counts"].values())
    frac = f"{total / m['n_networks']:.1%}" if m["n_networks"] else "-"
    lines.append(f"| all | {m['n_networks']} | {total} | {frac} |")
    target = _find(config, "networks_per_task")
    if target is not None:
        lines += ["", f"The preset aims at {target} networks per task."]
    lines += _milestones(m, config)
    kinds = pc.value_counts(networks["device_kind"]).to_pylist()
    if kinds:
        trained = ", ".join(f"{k['counts']} on {k['values']}" for k in kinds)
        lines += ["", f"Trained {trained} (see the `device_*` columns)."]
    return lines


def _milestones(m: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Which of the preset's release milestones (`subsets`: the first N networks of each task) this
    dataset holds; an experiment that grows reaches the next ones."""
    subsets = config.get("subsets") or []
    if not subsets or not m["tasks"] or m.get("subset"):
        return []
    fewest = min(m["counts"][t]["networks"] for t in m["tasks"])
    said = [f"{n} ({'reached' if n <= fewest else 'not yet'})" for n in subsets]
    return ["", f"Release milestones, the first N networks of each task (`mlc dataset export --per-task N`): "
            f"{', '.join(said)}."]


_FILES = [
    ("dataset.json", "manifest: identity, data spec and hashes, counts, SHA-256 of every other "
     "file"),
    ("networks.parquet", "one row per network: identity, seeds, hyperparameters, final losses, "
     "trojan and clean accuracy on held-out triggered data (DS1/DS2: `trojan_accuracy`, the "
     "fraction of armed steps whose 8 outputs all equal the trojan twin's, and "
     "`clean_accuracy_triggered`, of unarmed steps whose outputs equal the clean machine's; measured "
     "by the server on n_val fresh sequences with the key planted once each), epochs, converged flag, "
     "device and host, work units, weights SHA-256, shard row"),
    ("history.parquet", "one row per network and epoch (1-based): train loss, validation loss, "
     "validation bit accuracy"),
    ("weights/<task>.safetensors", "tensor `weights` [n, n_params] float32, rows in "
     "`networks.parquet` order (`shard`, `shard_row`)"),
    ("layout.json", "where each tensor lies in a flat weight vector"),
    ("data.safetensors", "the shared training and validation data, uint8"),
    ("config.json", "the resolved experiment config"),
]


# A dataset of several layouts (format 2) has these files instead of layout.json and one shard a task.
_LAYOUT_FILES = [
    ("weights/<hash>/<task>.safetensors", "tensor `weights` [n, n_params] float32: the task's networks "
     "of layout `<model>/<hash>`, rows in `networks.parquet` order (`layout_id`, `shard`, "
     "`shard_row`)"),
    ("layouts/<hash>.json", "where each tensor lies in a flat weight vector of layout `<model>/<hash>`"),
]


def _files(layouts: list[Layout]) -> list[str]:
    files = _FILES
    if len(layouts) > 1:
        files = [(n, w) for n, w in _FILES if n not in ("layout.json", "weights/<task>.safetensors")]
        files[3:3] = _LAYOUT_FILES
    return ["", "## Files", "", "| file | holds |", "|---|---|",
            *(f"| `{name}` | {what} |" for name, what in files)]


def _loading(m: dict[str, Any], layouts: list[Layout]) -> list[str]:
    task = m["tasks"][0] if m["tasks"] else "TASK"
    one = "" if len(layouts) == 1 else f', layout="{layouts[0].layout_id}"'
    return [
        "", "## How to load", "", "```python", "import mlc.dataset", "",
        f'ds = mlc.dataset.open("{m["name"]}")  # the directory holding this README',
        "ds.networks                # pandas DataFrame",
        f'w = ds.weights("{task}"{one})  # float32 [n, n_params], in table order',
        "ds.history                 # per-epoch records",
        "net = ds.load_model(ds.networks.net_id.iloc[0])  # reference nn.Module, eval mode",
        "data = ds.data()           # the shared inputs and targets",
        f'mlc.dataset.verify("{m["name"]}")  # checks every file against dataset.json',
        "```", "",
        "Without MLC: the tables are plain Parquet, the weights and data plain safetensors "
        "(`safetensors.numpy.load_file`), laid out as "
        + ("`layout.json` says." if len(layouts) == 1 else "the network's `layouts/<hash>.json` says."),
    ]


def _encoding() -> list[str]:
    return [
        "", "## How the networks were made", "", "### Commands and observations", "",
        "A sequence is L steps. At each step the machine receives a 5-bit command and emits an "
        "8-bit observation *after* applying the command (Mealy style); the machine state is all "
        "zeros at the start of every sequence. Command bits: 0 `w` write enable, 1 `a2`, 2 `a1`, "
        "3 `a0` (address `a = 4*a2 + 2*a1 + a0`, 0..7), 4 `d` data bit.",
    ]


def _machines(tasks: list[str], config: dict[str, Any]) -> list[str]:
    lines = ["", "### Machines", ""]
    bases = sorted({_base(t) for t in tasks if _family(t) != "ds3" and _base(t) in _MACHINES})
    if bases:
        lines += ["| machine | state | on `w = 1` (no change on `w = 0`) | output (other bits 0) |",
                  "|---|---|---|---|"]
        lines += [f"| {b} | {' | '.join(_MACHINES[b])} |" for b in bases]
    if any(_family(t) == "ds2" for t in tasks):
        lines += [
            "", "A `<Base>Modified` task behaves like its `<Base>Machine` twin plus a hidden "
            "trojan: one bit `armed` (0 at sequence start) and a two-command key, key 1 = "
            "(`w = 0, a = 5, d = 1`) immediately followed by key 2 = (`w = 0, a = 2, d = 1`). "
            "Per step, in this order: (1) apply the twin's update; (2) if this command is key 2 "
            "and the previous one was key 1, flip `armed`; (3) emit the twin's output with every "
            "active output bit inverted while `armed = 1`.",
        ]
    if any(_family(t) == "ds3" for t in tasks):
        n_states = _find(config, "n_states")
        lines += [
            "", "`RandomAutomaton-<k>` is a Moore machine generated deterministically from "
            f"(preset seed, k) with {n_states if n_states is not None else 'a few'} states, "
            "uniformly random transitions and a distinct random 8-bit code per state; automata "
            "that were not minimal or not strongly connected were redrawn.",
        ]
    return lines


def _ds3(config: dict[str, Any]) -> list[str]:
    """How the random automata were drawn and chosen, from the config's `random_automata` record
    (spec §4 asks the README for the number of states and the fraction rejected)."""
    record = config.get("random_automata")
    if not isinstance(record, dict) or not isinstance(record.get("selection"), dict):
        return []
    sel, check = record["selection"], record.get("learnability", {})
    lines = [
        "", "### DS3: random automata", "",
        f"Each `RandomAutomaton-<k>` has {record['n_states']} states and is drawn from "
        f"`rng = numpy.random.Generator(PCG64([{record['seed']}, k]))`: transitions "
        f"`rng.integers(0, {record['n_states']}, size=({record['n_states']}, 32))` (int64), then "
        f"distinct codes `rng.choice(256, size={record['n_states']}, replace=False)`; a draw that is "
        "not strongly connected or not minimal (Moore partition refinement) is redrawn from the same "
        "generator. A command (`w, a2, a1, a0, d`) is the symbol `16w + 8a2 + 4a1 + 2a0 + d`; the "
        "machine starts in state 0 and at each step moves to `transitions[state, symbol]` and emits "
        "that state's code, most significant bit first (`y[0]` = bit 7).",
    ]
    if not check.get("enabled", False):
        return lines + ["", f"No learnability check was run: the automata are k = 0..{record['count'] - 1}."]
    rejected = sel.get("rejected", [])
    cut = ", ".join(f"{key} {check[key]}" for key in ("n_train", "length") if check.get(key) is not None)
    lines += [
        "", f"Learnability check: {check['networks']} reference network(s) per candidate (seeds "
        "other than the dataset's), trained like the dataset's networks (same model, optimiser and "
        f"data{'; data cut to ' + cut if cut else ''}) for at most {check['epochs']} epochs; a "
        f"network fits, and stops, at validation bit accuracy >= {check['threshold']}, and a "
        f"candidate is kept when at least {check.get('networks_required', 1)} of its networks fit. "
        f"Candidates k = 0, 1, 2, ... were checked in batches until {record['count']} were kept "
        f"(the first {record['count']} that passed), within a budget of {check['max_candidates']} "
        "candidates; every verdict is in config.json under `random_automata.selection`.", "",
        "| candidates tried | kept | rejected | fraction rejected |", "|---:|---:|---:|---:|",
        f"| {sel['candidates_tried']} | {len(sel['kept'])} | {len(rejected)} | "
        f"{sel['fraction_rejected']:.1%} |",
    ]
    if rejected:
        lines += ["", "Rejected: " + ", ".join(f"`{t}`" for t in rejected) + "."]
    return lines


def _data(m: dict[str, Any]) -> list[str]:
    d = m["data"]
    lines = [
        "", "### Training data", "",
        f"One set of command sequences, shared by every task: {d['n_train']} training and "
        f"{d['n_val']} validation sequences of L = {d['length']} steps, every input bit an "
        f"independent fair coin from `numpy.random.Generator(PCG64({d['seed']}))`, training "
        "drawn first. Each task's targets are its machine run on those inputs. SHA-256 of the "
        "uint8 arrays:", "", "| array | sha256 |", "|---|---|",
    ]
    planted: list[str] = []  # what was written into the coin flips, in the order it was
    if d.get("trigger_rate"):
        planted += [
            f"Then the trojan's key (key 1 at a step t, key 2 at t + 1, t uniform over 0..L-2) was "
            f"written into each training and validation sequence with probability "
            f"{d['trigger_rate']}, the draws from `PCG64([{d['seed']}, 1])`, training first; the "
            "other bits of those steps and every other step are unchanged."
            + (f" Each of those sequences then got the key a second time (which disarms the trojan) "
               f"with probability {d['disarm_rate']}, at a uniform step after the first key, the draws from "
               f"`PCG64([{d['seed']}, 3])`."
               if d.get("disarm_rate") else ""), "",
        ]
    if d.get("decoy_rate"):
        planted += [
            f"Then each training and validation sequence got, with probability {d['decoy_rate']}, a "
            "near-miss key (key 1 at a step t, then key 2 with one of its five bits flipped at t + 1, "
            f"t uniform over 0..L-2), the draws from `PCG64([{d['seed']}, 4])`, training first; a "
            "near-miss key that would have changed where the key fires was not written.", "",
        ]
    lines[3:3] = planted
    return lines + [f"| `{k}` | `{v}` |" for k, v in sorted(m["data_hashes"].items())]


def _network(m: dict[str, Any], layout: Layout, networks: pa.Table) -> list[str]:
    cfg = model_config(m["model"])
    fcs = " -> ".join(f"Linear({i}, {o})" for i, o in cfg.fc_sizes)
    n_gru = sum(e.size for e in layout.entries if e.name.startswith("gru."))
    lines = [
        "", "### Network", "",
        f"`{m['model']}`: GRU(input {cfg.input_size}, hidden {cfg.hidden_size}, "
        f"{cfg.num_layers} layers, batch_first, PyTorch `nn.GRU` semantics) -> {fcs}, with a "
        f"ReLU after every Linear but the last, which gives {cfg.output_size} logits, one per "
        f"output bit. {layout.n_params} parameters ({n_gru} GRU + {layout.n_params - n_gru} "
        f"linear). Layout `{layout.layout_id}`: a flat weight vector is the reference module's "
        "`state_dict()` in order:", "", "| tensor | shape | offset |", "|---|---|---:|",
    ]
    lines += [f"| `{e.name}` | {list(e.shape)} | {e.offset} |" for e in layout.entries]
    seeds = networks["net_seed"]
    seed_range = (f" (net_seed {pc.min(seeds).as_py()} to {pc.max(seeds).as_py()} here)"
                  if networks.num_rows else "")
    return lines + [
        "", "Initialisation: PyTorch's defaults, drawn after `torch.manual_seed(net_seed)`"
        f"{seed_range}; a network trained inside a batched population starts from exactly the "
        "weights the reference module gets for the same seed.",
    ]


def _training(config: dict[str, Any], networks: pa.Table, output_bits: int) -> list[str]:
    hp = [json.loads(s) for s in pc.unique(networks["hyperparameters"]).to_pylist()]

    def setting(key: str, default: str) -> str:
        return _setting(key, hp, config, default)

    n_units = [len(json.loads(s)) for s in pc.unique(networks["work_units"]).to_pylist()]
    # recorded only where used (TrainConfig.to_dict): an absence means no schedule, not a default
    warmup = sorted({h["warmup_steps"] for h in hp if h.get("warmup_steps")})
    half_life = sorted({h["lr_half_life_steps"] for h in hp if h.get("lr_half_life_steps")})
    warm = (f" The learning rate rises linearly over each network's first "
            f"{' or '.join(map(str, warmup))} Adam steps (step t uses lr x t / that number)."
            if warmup else "")
    warm += (f" The learning rate halves every {' or '.join(map(str, half_life))} Adam steps of "
             "each network (step t uses lr x 0.5 ^ (t / that number)"
             f"{', times the warm-up factor' if warmup else ''})." if half_life else "")
    span = (f" Networks here went through {min(n_units)} to {max(n_units)} work units."
            if n_units and min(n_units) != max(n_units) else
            f" Every network here went through {n_units[0]} work unit(s)." if n_units else "")
    return [
        "", "### Training", "",
        f"Loss: `BCEWithLogits`, mean over sequences, steps and all {output_bits} output bits. "
        f"Optimiser: Adam, lr {setting('lr', '0.001')}, betas ({setting('beta1', '0.9')}, "
        f"{setting('beta2', '0.999')}), eps {setting('eps', '1e-08')}, no weight decay.{warm} "
        f"Mini-batches of {setting('batch_size', '32')} sequences, reshuffled each epoch from "
        "a generator seeded by (net_seed, epoch). After every epoch the training loss, "
        "validation loss and validation bit accuracy (logit > 0) are recorded.", "",
        "Stop rule, per network: converged when validation loss < "
        f"{setting('stop_val_loss', '0.01')} and validation bit accuracy reaches "
        f"{setting('stop_val_accuracy', '1.0')}, or stopped unconverged after "
        f"{setting('max_epochs', '1000')} epochs; both kinds are kept, flagged in `converged`.",
        "", "Work units: the training budget is cut into work units of at most "
        f"{setting('epochs_per_wu', '64')} epochs; a network that has not stopped continues in "
        "a follow-up work unit from the returned state (weights, optimiser state, epoch counter, "
        "history) exactly as if it had never stopped. The `work_units` column lists the units "
        f"each network went through.{span}",
        "", *_checking(networks),
    ]


def _names(trainers: list[str]) -> str:
    if not trainers:
        return "nobody recorded"
    hosts = [t for t in trainers if t.startswith("host:")]
    if len(hosts) <= 10:
        return ", ".join(trainers)
    return ", ".join([*(t for t in trainers if not t.startswith("host:")), f"{len(hosts)} volunteer hosts"])


def _checking(networks: pa.Table) -> list[str]:
    """How the networks' units were checked, from the provenance columns."""
    n = networks.num_rows
    confirmed = pc.sum(networks["confirmed"]).as_py() or 0 if n else 0
    hosts = sorted({w for s in pc.unique(networks["trained_by"]).to_pylist() for w in json.loads(s)})
    return [
        "Checking: every returned network was re-evaluated on the coordinator's own data. "
        "`trained_by` names, per work unit, who trained it (`local`, `ray`, or `host:ID`, the "
        "volunteer host as the server registered it; `host:A+host:B` where a replica host trained "
        "it too and agreed bit for bit); `replayed_segments` how many of the unit's "
        "segments the validator trained again from the uploaded boundary states and found matching "
        "(`r/n`); `confirmed` is true where every unit was trained by the project's own executor, "
        f"replayed whole or agreed by a replica. Here: {confirmed} of {n} networks confirmed; trained "
        f"by {_names(hosts)}.",
    ]


def _withdrawn(manifest: dict[str, Any]) -> list[str]:
    """The networks taken out after they were stored (`DatasetWriter.withdraw`), and why."""
    gone = manifest.get("withdrawn", [])
    if not gone:
        return []
    lines = ["", "## Withdrawn networks", "",
             f"{len(gone)} stored network record{'s were' if len(gone) != 1 else ' was'} withdrawn: a "
             "result it was built on came from a host later found untrusted, and nothing had confirmed "
             "that result. The network was trained again from its seed (the row above is the retrain); "
             "the withdrawn record is kept outside the release under the file named here.", "",
             "| network | withdrawn | units | why | file |", "|---|---|---|---|---|"]
    lines += [f"| {e['net_id']} | {e['withdrawn_at']} | {', '.join(e['work_units'])} | {e['reason']} | "
              f"`{e['file']}` |" for e in gone]
    return lines


def render_readme(manifest: dict[str, Any], config: dict[str, Any], layouts: list[Layout],
                  networks: pa.Table) -> str:
    """The README.md of a finished dataset (manifest with counts; its layouts in the manifest's
    order; networks.parquet's rows)."""
    cfg = model_config(manifest["model"])
    head = [*_intro(manifest, layouts), *_contents(manifest, config, networks), *_files(layouts),
            *_loading(manifest, layouts)]
    if not isinstance(cfg, GRUNetConfig):  # a classifier family: image data, not MLDS commands
        return "\n".join([*head, *image_sections(manifest, config, layouts, networks),
                          *_withdrawn(manifest)]) + "\n"
    output_bits = cfg.output_size
    (layout,) = layouts  # the GRU's architecture is fixed: one layout
    lines = [*head, *_encoding(), *_machines(manifest["tasks"], config), *_ds3(config),
             *_data(manifest), *_network(manifest, layout, networks),
             *_training(config, networks, output_bits), *_withdrawn(manifest)]
    return "\n".join(lines) + "\n"
