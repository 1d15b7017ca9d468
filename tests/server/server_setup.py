"""What the server tests share: a small preset, and a real `mlc server` process to start, stop and kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SMALL_PRESET = """
# Server tests: two DS1 machines and their DS2 twins, cut down so a run takes seconds.
name = "small"
model = "mlds-gru"
spec_version = "mlds-1"
seed = 7
tasks = ["SingleDirectMachine", "ParityMachine", "SingleDirectModified", "ParityModified"]
networks_per_task = 2
networks_per_wu = 1
epochs_per_wu = 2
subsets = [2]

[data]
seed = 3
n_train = 64
n_val = 16
length = 12

[train]
max_epochs = 4
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_with_src() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}


@dataclass
class RunningServer:
    """A server process: its URL, folder, database URL and admin token; `stop`, `kill` and `start`
    (again, on the same folder, database and port)."""

    url: str
    workdir: Path
    db_url: str
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)  # MLC_SERVER_* settings of this server

    @property
    def admin_token(self) -> str:
        return (self.workdir / "admin.token").read_text().strip()

    def start(self, timeout: float = 60.0) -> None:
        cmd = [
            sys.executable,
            "-m",
            "mlc",
            "server",
            "--workdir",
            str(self.workdir),
            "--db",
            self.db_url,
            "--port",
            str(self.port),
        ]
        with self.log.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                cmd, env={**env_with_src(), **self.env}, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited ({self.proc.returncode}): {self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/api/v1/status", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not answer within {timeout} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1", headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=60
        )

    def submit(self, preset_toml: str = SMALL_PRESET, **fields: object) -> dict:
        with self.admin() as client:
            response = client.post("/admin/experiments", json={"preset_toml": preset_toml, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    def experiments(self) -> list[dict]:
        return httpx.get(f"{self.url}/api/v1/experiments", timeout=30).json()

    def wait_finished(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = next(e for e in self.experiments() if e["name"] == name)
            if info["state"] == "finished":
                return info
            time.sleep(0.5)
        raise AssertionError(
            f"{name} did not finish within {timeout} s: {info}; {self.log.read_text()[-3000:]}"
        )
