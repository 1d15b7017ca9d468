"""Training throughput of the working tree against a git revision, interleaved in one run.

Kernel changes move throughput by 5-50%, while this kind of machine drifts by as much between
minutes. So both sides run here, alternating, each configuration in a fresh child process (its own
kernel build, from its own sources), and the ratio of their medians is what to read:

    python benchmarks/revision_ab.py --baseline HEAD            # uncommitted changes against HEAD
    python benchmarks/revision_ab.py --baseline HEAD~3 --models 128 --rounds 5
    python benchmarks/revision_ab.py --layer manual --threads 2  # the PyTorch fallback
    MLC_NATIVE_ARCH=x86-64-v3 python benchmarks/revision_ab.py  # as an AVX2 volunteer builds them

The baseline is `git archive`d into a temporary directory and imported from there; both sides are
timed by this tree's `train_throughput.measure_population` (the real trainer, one epoch of `--steps`
mini-batches after a warm-up epoch), so the baseline must have the trainer API it uses. The last
line reads `ratio vs <revision>: <x>x` (above 1: the working tree is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tarfile
import tempfile
from pathlib import Path

from train_throughput import run_child  # this folder is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent


def _export(revision: str, into: Path) -> Path:
    """The package sources of `revision`, unpacked under `into`; returns its src directory."""
    archive = into / "baseline.tar"
    command = ["git", "archive", "--output", str(archive), revision, "src"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"cannot export {revision!r}: {out.stderr.strip()}")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _measure(src: Path, args: argparse.Namespace) -> dict:
    """train_throughput's measurement of the trainer, in a process that imports the package from `src`."""
    command = ["population", args.device, str(args.steps), str(args.models), args.layer, "fused"]
    result = run_child(command, args.threads, {**os.environ, "PYTHONPATH": str(src)})
    if "error" in result:
        raise SystemExit(f"a child run from {src} failed: {result['error']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare against")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--models", type=int, default=64, help="population size")
    parser.add_argument("--steps", type=int, default=4, help="mini-batches per timed epoch")
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs of each side")
    parser.add_argument("--threads", type=int, default=1, help="CPU: training threads")
    parser.add_argument(
        "--layer",
        choices=["auto", "manual"],
        default="auto",
        help="auto: what the trainer picks; manual: the PyTorch recurrence (the fallback without a compiler)",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.models < 1 or args.steps < 1:
        parser.error("--rounds, --models and --steps must be positive")
    with tempfile.TemporaryDirectory() as tmp:
        sides = {args.baseline: _export(args.baseline, Path(tmp)), "working tree": ROOT / "src"}
        rates: dict[str, list[float]] = {name: [] for name in sides}
        for round_ in range(args.rounds):
            for name, src in sides.items():
                result = _measure(src, args)
                rates[name].append(result["model_steps_s"])
                print(f"round {round_ + 1}  {name:>14}: {result['model_steps_s']:8.1f} model-steps/s"
                      f"  ({result['kernels']})", flush=True)  # fmt: skip
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in medians.items():
        print(f"median {name:>14}: {value:8.1f} model-steps/s")
    print(f"ratio vs {args.baseline}: {medians['working tree'] / medians[args.baseline]:.2f}x")


if __name__ == "__main__":
    main()
