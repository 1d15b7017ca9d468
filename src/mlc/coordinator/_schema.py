"""The coordinator's database schema (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Times are naive UTC (`utcnow()`), which both databases store and compare the same way.

Work-unit state lives in columns, BOINC style: any daemon can die at any instant and the next pass
picks up from the rows. Uniqueness constraints make every upload and every history row idempotent.
"""

from __future__ import annotations

import enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

__all__ = [
    "SCHEMA_VERSION",
    "accounts",
    "credit_columns",
    "ExperimentState",
    "HostTrust",
    "NetworkState",
    "Verdict",
    "WUState",
    "daemons",
    "experiments",
    "history",
    "hosts",
    "leases",
    "metadata",
    "meta",
    "networks",
    "results",
    "withdrawals",
    "work_units",
]

SCHEMA_VERSION = "3"  # the hand-kept version older mlc versions check; Alembic keeps the real one


class WUState(enum.StrEnum):
    READY = "ready"  # waiting for a worker
    LEASED = "leased"  # a worker holds it until lease_expires_at
    REPORTED = "reported"  # a result arrived and awaits validation
    VALID = "valid"  # a result passed validation and awaits assimilation
    DONE = "done"  # assimilated: history stored, finished networks staged, continuation created
    FAILED = "failed"  # gave up after max_attempts
    WITHDRAWN = "withdrawn"  # built on a result of a host found untrusted: its networks train again


class Verdict(enum.StrEnum):
    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"
    SUPERSEDED = "superseded"  # not judged: another result of its unit was already accepted


class ExperimentState(enum.StrEnum):
    RUNNING = "running"  # its units are handed out
    PAUSED = "paused"  # kept, nothing handed out until resumed
    CANCELLED = "cancelled"  # nothing more handed out, ever; what was assimilated stays
    FINISHED = "finished"  # every network finished or failed


class HostTrust(enum.StrEnum):
    NEW = "new"  # no run of valid results yet
    TRUSTED = "trusted"  # a run of valid results
    UNTRUSTED = "untrusted"  # a result of its failed replay: no more work, its unconfirmed results voided


class NetworkState(enum.StrEnum):
    TRAINING = "training"
    FINISHED = "finished"  # stop rule fired (converged or max_epochs); staged in the dataset
    FAILED = "failed"  # its work unit failed for good


metadata = MetaData()

meta = Table(
    "mlc_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

experiments = Table(
    "experiments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("config_json", Text, nullable=False),
    Column("data_digest", String(64), nullable=False),
    Column("layout_id", String(100), nullable=False),
    Column("dataset_dir", Text, nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("finished_at", DateTime()),
    Column("state", String(16), nullable=False, server_default=ExperimentState.RUNNING.value),
    Column("queue", String(16), nullable=False, server_default="cpu"),  # cpu, gpu or test
    Column("n_params", Integer),  # the layout's size, for checks that must not load the model
)

# A network's key is (experiment_id, net_id): net_id is the dataset-facing "<task>-<index:06d>", which
# two experiments with a common task share.
networks = Table(
    "networks",
    metadata,
    Column("experiment_id", Integer, ForeignKey("experiments.id"), primary_key=True),
    Column("net_id", String(200), primary_key=True),
    Column("task", String(100), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("net_seed", BigInteger, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("epochs", Integer, nullable=False, default=0),
    Column("converged", Boolean, nullable=False, default=False),
    Column("wall_time_s", Float, nullable=False, default=0.0),
    Column("work_units", Text, nullable=False, default="[]"),  # JSON list of wu ids, in order
    UniqueConstraint("experiment_id", "task", "idx"),
)

history = Table(
    "history",
    metadata,
    Column("experiment_id", Integer, primary_key=True),
    Column("net_id", String(200), primary_key=True),
    Column("epoch", Integer, primary_key=True),  # 1-based
    Column("train_loss", Float, nullable=False),
    Column("val_loss", Float, nullable=False),
    Column("val_accuracy", Float, nullable=False),
    ForeignKeyConstraint(["experiment_id", "net_id"], ["networks.experiment_id", "networks.net_id"]),
)

work_units = Table(
    "work_units",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False, index=True),
    Column("seq", Integer, nullable=False),  # issue order
    Column("parent_id", String(200)),
    Column("spec_json", Text, nullable=False),
    Column("state_blob", LargeBinary),  # continuation start state (safetensors); dropped when done
    Column("state", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", DateTime()),
    Column("provenance_json", Text),  # of the assimilated result
    Column("error", Text),
    Column("created_at", DateTime(), nullable=False),
    Column("updated_at", DateTime(), nullable=False),
    # agreeing valid results (of distinct hosts) it needs: 2 when it was sent to a replica host
    Column("quorum", Integer, nullable=False, server_default="1"),
    Column("replica_class", String(200)),  # a replica must come from a host of this kernel class
)

results = Table(
    "results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("wu_id", String(200), ForeignKey("work_units.id"), nullable=False, index=True),
    Column("sha256", String(64), nullable=False),
    Column("payload", LargeBinary),  # dropped after assimilation; history and dataset hold it then
    Column("verdict", String(16), nullable=False),
    Column("reason", Text),
    Column("reporter", String(200)),
    Column("received_at", DateTime(), nullable=False),
    Column("credit", Float),  # granted to its host when judged valid; 0 once revoked (voided later)
    Column("credited_at", DateTime()),  # when granted: None for results never credited
    Column("replayed", Integer),  # segments of its unit the validator replayed (None: not judged)
    Column("kernel_class", String(200)),  # of a judged result: where it says it was computed
    Column("training_sha256", String(64)),  # `WorkUnitResult.training_sha256`: equal for agreeing replicas
    UniqueConstraint("wu_id", "sha256"),
    Index("ix_results_verdict_credited_at", "verdict", "credited_at"),  # credit's pass finds its rows
)


def credit_columns() -> tuple[Column, ...]:
    """A credit holder's total and recent average (BOINC's RAC, credit per day, as it stood at
    `rac_at`; it decays with a one-week half-life between grants)."""
    return (
        Column("credit", Float, nullable=False, server_default="0"),
        Column("rac", Float, nullable=False, server_default="0"),
        Column("rac_at", DateTime()),
    )


# Volunteers: a random account key is handed out once; only its SHA-256 is kept (as for host tokens).
accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_sha256", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False, unique=True),
    Column("created_at", DateTime(), nullable=False),
    *credit_columns(),
)

# Volunteer hosts of `mlc server`: a random token is handed out once; only its SHA-256 is kept.
hosts = Table(
    "hosts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("last_seen_at", DateTime(), nullable=False),
    Column("description_json", Text, nullable=False, server_default="{}"),  # device, cores, versions...
    Column("test_queue", Boolean, nullable=False, server_default=false()),
    Column("trust", String(16), nullable=False, server_default="new"),  # HostTrust
    Column("account_id", Integer, ForeignKey("accounts.id"), index=True),  # its volunteer, if linked
    Column("kernel_class", String(200)),  # of its last judged result: who may replicate its units
    Column("agree_streak", Integer, nullable=False, server_default="0"),  # replicas agreed in a row
    *credit_columns(),
)

# One row per daemon (transitioner, validator, assimilator): its last pass, for /api/v1/status.
daemons = Table(
    "daemons",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("owner", String(200), nullable=False),  # host:pid of the process that ran the pass
    Column("last_pass_at", DateTime(), nullable=False),
    Column("last_pass_s", Float, nullable=False),
    Column("passes", BigInteger, nullable=False),
    Column("last_error", Text),
)

# Every lease a unit was given, once per holder: who may upload for it, and who trained it.
leases = Table(
    "leases",
    metadata,
    Column("wu_id", String(200), ForeignKey("work_units.id"), primary_key=True),
    Column("owner", String(200), primary_key=True),
    Column("leased_at", DateTime(), nullable=False),
)

# Networks to take out of a dataset: their record was built on a result of a host found untrusted.
# Written with the database's side of the withdrawal (networks reset, units withdrawn) and applied to
# the dataset by the assimilator, which compares `work_units` with the staged record first, so a
# request never withdraws the record retrained after it.
withdrawals = Table(
    "withdrawals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False, index=True),
    Column("net_id", String(200), nullable=False),
    Column("work_units", Text, nullable=False),  # JSON list: the units of the record to withdraw
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("applied_at", DateTime()),
)
