"""A worker's own folder: its registration (token, mode 0600), the batch it is training, results
waiting to be uploaded, and the runtime's checkpoints. One worker uses a folder at a time (a lock).

Everything here is written atomically (a temporary file renamed into place), so a worker killed at
any instant restarts from a consistent folder: a result on disk is uploaded, a batch on disk is
resumed from its checkpoint, a half-written file never exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["WorkerFolder"]


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class WorkerFolder:
    """The files of one worker under `root` (made private to the user)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def create(self) -> None:
        for folder in (self.root, self.outbox, self.checkpoints):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def lock_file(self) -> Path:
        return self.root / "worker.lock"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    # -- registration --------------------------------------------------------------------------

    def registration(self, server: str) -> dict[str, Any] | None:
        """host_id and token for `server`, or None where this folder never registered with it."""
        path = self.root / "host.json"
        if not path.exists():
            return None
        saved = json.loads(path.read_text())
        return saved if saved.get("server") == server else None

    def save_registration(self, server: str, host_id: int, token: str) -> None:
        blob = json.dumps({"server": server, "host_id": host_id, "token": token}).encode()
        _write_private(self.root / "host.json", blob)

    def forget_registration(self) -> None:
        (self.root / "host.json").unlink(missing_ok=True)

    # -- the batch in training -----------------------------------------------------------------

    def save_batch(self, units: list[dict[str, Any]]) -> None:
        """The leased units being trained (spec JSON and start state), so a restarted worker trains
        the same batch again, in the same order, and so finds its checkpoint."""
        _write_private(self.root / "batch.json", json.dumps(units).encode())

    def batch(self) -> list[dict[str, Any]]:
        path = self.root / "batch.json"
        return json.loads(path.read_text()) if path.exists() else []

    def clear_batch(self) -> None:
        (self.root / "batch.json").unlink(missing_ok=True)

    # -- results waiting for the server --------------------------------------------------------

    def put_result(self, wu_id: str, blob: bytes) -> None:
        _write_private(self.outbox / f"{wu_id}.safetensors", blob)

    def pending_results(self) -> list[Path]:
        return sorted(self.outbox.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
