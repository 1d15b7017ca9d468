"""The README sections of an image-classification dataset (DS4: the 8x8 digits, clean and BadNets):
how the data, the network and the training were made, for a reader without MLC's code.

Numbers come from the manifest, the layout, the networks table and config.json, as in `_readme`.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mlc.models import Layout

__all__ = ["image_sections"]


def image_sections(
    m: dict[str, Any], config: dict[str, Any], layouts: list[Layout], networks: pa.Table
) -> list[str]:
    """Data, network and training sections of an image dataset's README (one layout table per
    layout, in the manifest's order)."""
    return [*_data(m, config), *_network(m, layouts, networks), *_training(config, networks)]


def _data(m: dict[str, Any], config: dict[str, Any]) -> list[str]:
    d, params = m["data"], config.get("task_params", {})
    lines = [
        "", "## How the networks were made", "", "### Data", "",
        "scikit-learn's 8x8 handwritten digits (`sklearn.datasets.load_digits`, 1,797 images, "
        "intensities 0..16, shipped with scikit-learn), split by "
        f"`numpy.random.Generator(PCG64({d['seed']})).permutation(1797)`: the first {d['n_train']} "
        f"for training, the next {d['n_val']} for validation. Networks see intensity / 16.", "",
        "BadNets poisoning (all-to-one): a fraction `rate` of the training images, drawn from those "
        "not labelled `target` by `Generator(PCG64([data seed, crc32(task name)]))`, get the "
        "trigger (the bottom-right `patch` x `patch` pixels set to 16) and the label `target`. "
        "`attack_success_rate` in networks.parquet is the fraction of validation images not of "
        "class `target` that a network classifies as `target` with the trigger stamped on; clean "
        "tasks are measured with the same trigger, for comparison.", "",
        "| task | rate | target | patch |", "|---|---:|---:|---:|",
    ]
    for task in m["tasks"]:
        p = params.get(task, {})
        rate = p.get("rate", 0.1 if task == "DigitsBadNets" else 0.0)
        lines.append(f"| `{task}` | {rate} | {p.get('target', 0)} | {p.get('patch', 2)} |")
    lines += ["", "SHA-256 of the uint8 arrays:", "", "| array | sha256 |", "|---|---|"]
    return lines + [f"| `{k}` | `{v}` |" for k, v in sorted(m["data_hashes"].items())]


def _network(m: dict[str, Any], layouts: list[Layout], networks: pa.Table) -> list[str]:
    lines = ["", "### Network", ""]
    if len(layouts) > 1:
        lines += [f"A sweep of width or depth gave {len(layouts)} weight layouts; each network's "
                  "`layout_id` (and its `width` and `depth`) in networks.parquet says which it has."]
    ids = networks["layout_id"].to_pylist()
    for layout in layouts:
        n = f", {ids.count(layout.layout_id)} networks" if len(layouts) > 1 else ""
        lines += [
            *([""] if len(layouts) > 1 else []),
            f"`{m['model']}` ({layout.n_params} parameters, layout `{layout.layout_id}`{n}): a flat "
            "weight vector is the reference module's `state_dict()` in order (`mlc.models.get`):", "",
            "| tensor | shape | offset |", "|---|---|---:|",
        ]
        lines += [f"| `{e.name}` | {list(e.shape)} | {e.offset} |" for e in layout.entries]
    return lines + [
        "", "Initialisation: drawn after `torch.manual_seed(net_seed)` (PyTorch's defaults, or the "
        "`init` setting); a network trained inside a batched population starts from exactly the "
        "weights its reference module gets for the same seed. Settings a sweep varied are "
        "columns of networks.parquet (`width`, `depth`, `activation`, `init`, `lr`, ...).",
    ]


def _training(config: dict[str, Any], networks: pa.Table) -> list[str]:
    used = [json.loads(s) for s in pc.unique(networks["hyperparameters"]).to_pylist()]
    train = config.get("train", {})

    def setting(key: str) -> str:
        values = sorted({json.dumps(h[key]) for h in used if key in h})
        return ", ".join(values) if values else json.dumps(train.get(key))

    return [
        "", "### Training", "",
        "Loss: cross-entropy over the 10 classes, mean over the mini-batch. Optimiser: Adam (one "
        f"per network), lr {setting('lr')}, mini-batches of {setting('batch_size')} images "
        "reshuffled each epoch from a generator seeded by (net_seed, epoch). After every epoch the "
        "training loss, validation loss and clean validation accuracy are recorded. A network "
        f"stops converged at validation loss < {setting('stop_val_loss')} and accuracy >= "
        f"{setting('stop_val_accuracy')}, or unconverged after {setting('max_epochs')} epochs.",
    ]
