"""The server's settings: the only module that reads the environment (`MLC_SERVER_*`), so everything
else takes its configuration as arguments (and tests build settings directly)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from mlc.coordinator import ReplicationPolicy

__all__ = ["ROLES", "ServerSettings"]

ROLES = ("all", "api", "transitioner", "validator", "assimilator")
Role = Literal["all", "api", "transitioner", "validator", "assimilator"]


class ServerSettings(BaseSettings):
    """Where the server keeps its state and how it treats hosts. Every field can be set by the
    environment variable `MLC_SERVER_<FIELD>` (e.g. MLC_SERVER_MAX_UPLOAD_BYTES)."""

    model_config = SettingsConfigDict(env_prefix="MLC_SERVER_", extra="forbid")

    workdir: Path
    db_url: str | None = None  # None: SQLite at workdir/mlc.db; else e.g. postgresql+psycopg://...
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    role: Role = "all"  # all: the API and every daemon in this process
    lease_seconds: float = Field(3600.0, gt=0)  # a worker extends its leases long before this
    retry_after_s: float = Field(5.0, gt=0)  # what a worker is told to wait when there is no work
    max_upload_bytes: int = Field(64 * 2**20, gt=0)  # refused before the body is read
    max_lease_networks: int = Field(16384, ge=1)
    daemon_interval_s: float = Field(1.0, gt=0)  # a daemon's sleep after a pass that found nothing
    # segments a submitted experiment's units are cut into (a preset's replay_segments wins): the
    # validator replays one of them per result, 1/replay_segments of the unit's training
    replay_segments: int = Field(4, ge=1)
    # adaptive replication (coordinator._replication): a host's units all go to a replica host of its
    # kernel class until `replication_run` of them agreed in a row, then a halving share, down to
    # `replication_floor` (0 with a run of 0: no replication; 1: every unit)
    replication_run: int = Field(5, ge=0)
    replication_floor: float = Field(0.05, ge=0, le=1)

    @property
    def database_url(self) -> str:
        from mlc.coordinator import sqlite_url

        return self.db_url or sqlite_url(self.workdir / "mlc.db")

    @property
    def replication(self) -> ReplicationPolicy:
        from mlc.coordinator import ReplicationPolicy

        return ReplicationPolicy(self.replication_run, self.replication_floor)

    @property
    def datasets_dir(self) -> Path:
        return self.workdir / "datasets"

    @property
    def admin_token_file(self) -> Path:
        return self.workdir / "admin.token"
