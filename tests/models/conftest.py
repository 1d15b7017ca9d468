"""Triton's CPU interpreter for the kernel tests: it reads TRITON_INTERPRET when the kernels are defined
(at import), so the interpreted checks run in a child interpreter (the test file run as a script)
that prints its measurements as JSON; the tests assert on them. The parent process never launches a
kernel and so never depends on that variable."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def run_interpreted() -> Callable[[str], dict]:
    def run(script: str) -> dict:
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        src = str(Path(importlib.util.find_spec("mlc").origin).parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        proc = subprocess.run(
            [sys.executable, "-W", "error", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run
