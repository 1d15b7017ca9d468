"""Schemathesis fuzzes every operation of the server's own OpenAPI schema against a real server
process, as a host and as the admin: no request it can make gets a 5xx. Bounded by a fixed seed and
a number of examples per operation, so a run is repeatable and takes seconds."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra: pip install -e '.[dev]'")
pytestmark = pytest.mark.slow


def _fuzz(url: str, token: str, tmp_path, label: str) -> None:  # type: ignore[no-untyped-def]
    command = [
        sys.executable,
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "25",
        "--seed",
        "1",
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",
        "--no-color",
    ]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, f"{label}: {report}"
    counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert counts and int(counts[1]) == int(counts[2]) > 100, report


def test_no_request_from_the_schema_gets_a_server_error(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server.submit()  # an experiment, so that leases and uploads meet real units
    host = httpx.post(f"{server.url}/api/v1/hosts", json={"name": "fuzz"}, timeout=30).json()["token"]
    _fuzz(server.url, host, tmp_path, "as a host")
    _fuzz(server.url, server.admin_token, tmp_path, "as the admin")
    assert httpx.get(f"{server.url}/api/v1/status", timeout=30).status_code == 200
    assert "Traceback" not in server.log.read_text()
