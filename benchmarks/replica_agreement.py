"""How far honest replicas of one work unit stay apart: the numbers behind replication's "agree
exactly within a class" and segment replay's tolerance across classes.

The same unit (DS1 machines, the full MLDS data, `--networks` networks, `--epochs` epochs in
`--segments` segments) is trained twice on each CPU kernel path, each run in a fresh process: the C
kernels built for this CPU (`native`), the C kernels built for x86-64-v3 (AVX2), and the PyTorch
path (MLC_NATIVE=0). Printed: whether the two runs of a path are bit-identical, and across paths the
largest weight difference, the relative distance (|a - b| / |b - start| per network, the replay's
measure) and the largest difference of any recorded loss.

    python benchmarks/replica_agreement.py [--networks 8] [--epochs 8] [--segments 4]
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PATHS = {
    "C/native": {},
    "C/x86-64-v3": {"MLC_NATIVE_ARCH": "x86-64-v3"},
    "PyTorch": {"MLC_NATIVE": "0"},
}

_CHILD = """
import sys
from mlc import models
from mlc.coordinator import build_shared_data
from mlc.work import Member, WorkerRuntime, WorkUnit, WorkUnitSpec, load_preset
networks, epochs, segments, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
config = load_preset("mlds-ds1", {"epochs_per_wu": epochs})
members = tuple(Member(config.net_id(t, i), t, i, config.net_seed(t, i))
                for i in range(networks // len(config.tasks) + 1) for t in config.tasks)[:networks]
spec = WorkUnitSpec("bench-g000000-p000", config.name, config.model, models.layout(config.model).layout_id,
                    config.train, config.data, build_shared_data(config).digest(), config.tasks, members,
                    epochs, segments=segments)
runtime = WorkerRuntime("cpu", threads=1)
runtime.prepare()
(result,) = runtime.train([WorkUnit(spec)])
print(result.provenance.kernel_class)
open(out, "wb").write(result.to_bytes())
"""


def _train(path: str, args: argparse.Namespace, out: Path) -> str:
    env = {**os.environ, **PATHS[path], "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-c", _CHILD, str(args.networks), str(args.epochs), str(args.segments), str(out)]
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--segments", type=int, default=4)
    args = parser.parse_args()

    import numpy as np
    import torch

    from mlc.work import WorkUnitResult

    runs: dict[str, list[WorkUnitResult]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in PATHS:
            for i in range(2):
                out = Path(tmp) / f"{path.replace('/', '_')}-{i}.safetensors"
                klass = _train(path, args, out)
                runs.setdefault(path, []).append(WorkUnitResult.from_bytes(out.read_bytes()))
            print(f"{path:12s} kernel class {klass}")
    print(f"\n{args.networks} networks, {args.epochs} epochs, {args.segments} segments, full MLDS data")
    for path, (a, b) in runs.items():
        same = all(
            torch.equal(x, y)
            for x, y in zip(a.state.tensors().values(), b.state.tensors().values(), strict=True)
        )
        print(f"{path:12s} two runs bit-identical: {same}")
    print(f"\n{'paths':28s} {'max |dw|':>10s} {'rel. distance':>14s} {'max |d loss|':>13s}")
    for p, q in itertools.combinations(runs, 2):
        a, b = runs[p][0], runs[q][0]
        dw = (a.state.params - b.state.params).abs().max().item()
        # the replay's measure, over the whole unit: distance / how far training moved the weights
        start = b.boundaries[0].params if args.segments > 1 else b.state.params
        rel = (
            ((a.state.params - b.state.params).norm(dim=1) / (b.state.params - start).norm(dim=1))
            .max()
            .item()
        )
        dl = float(np.nanmax(np.abs(a.history.val_loss - b.history.val_loss)))
        print(f"{p + ' vs ' + q:28s} {dw:10.3g} {rel:14.3g} {dl:13.3g}")


if __name__ == "__main__":
    main()
