"""How long `mlc --help`, `mlc --version` and `mlc presets` take in a fresh interpreter, against what
every command paid before they stopped importing torch (`python -c "import torch"`), same run.

Each command runs `--repeat` times in a fresh process, interleaved with the baseline so that a busy
machine slows both alike; reported are the median wall time and the median CPU time (user + system,
which a loaded machine inflates less). The last line is `ratio vs import torch: <x>x` (the baseline's
median wall time over `mlc presets`').

    python benchmarks/cli_startup.py            # about 20 s
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "import torch (baseline)": ["-c", "import torch"],
    "mlc --help": ["-m", "mlc", "--help"],
    "mlc --version": ["-m", "mlc", "--version"],
    "mlc presets": ["-m", "mlc", "presets"],
}


def _timed(args: list[str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one fresh interpreter running `args`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL, env=os.environ)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    repeat = parser.parse_args().repeat
    for args in COMMANDS.values():  # warm the file cache once
        _timed(args)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for _ in range(repeat):
        for name, args in COMMANDS.items():
            times[name].append(_timed(args))
    print(f"{'command':26} {'wall s':>8} {'cpu s':>8}   (medians of {repeat})")
    for name, runs in times.items():
        wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
        print(f"{name:26} {wall:8.3f} {cpu:8.3f}")
    baseline = statistics.median(w for w, _ in times["import torch (baseline)"])
    presets = statistics.median(w for w, _ in times["mlc presets"])
    print(f"ratio vs import torch: {baseline / presets:.1f}x")


if __name__ == "__main__":
    main()
