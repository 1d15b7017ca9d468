"""The schema of mlc 0.1 before migrations (its hand-kept schema version "2"): experiments, networks
and history keyed by (experiment_id, net_id), work units and results.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        "mlc_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.bulk_insert(meta, [{"key": "schema_version", "value": "2"}])
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("config_json", sa.Text, nullable=False),
        sa.Column("data_digest", sa.String(64), nullable=False),
        sa.Column("layout_id", sa.String(100), nullable=False),
        sa.Column("dataset_dir", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime()),
    )
    op.create_table(
        "networks",
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), primary_key=True),
        sa.Column("net_id", sa.String(200), primary_key=True),
        sa.Column("task", sa.String(100), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("net_seed", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("epochs", sa.Integer, nullable=False),
        sa.Column("converged", sa.Boolean, nullable=False),
        sa.Column("wall_time_s", sa.Float, nullable=False),
        sa.Column("work_units", sa.Text, nullable=False),
        sa.UniqueConstraint("experiment_id", "task", "idx"),
    )
    op.create_table(
        "history",
        sa.Column("experiment_id", sa.Integer, primary_key=True),
        sa.Column("net_id", sa.String(200), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("train_loss", sa.Float, nullable=False),
        sa.Column("val_loss", sa.Float, nullable=False),
        sa.Column("val_accuracy", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(["experiment_id", "net_id"], ["networks.experiment_id", "networks.net_id"]),
    )
    op.create_table(
        "work_units",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False, index=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("parent_id", sa.String(200)),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("state_blob", sa.LargeBinary),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", sa.DateTime()),
        sa.Column("provenance_json", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("wu_id", sa.String(200), sa.ForeignKey("work_units.id"), nullable=False, index=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("reporter", sa.String(200)),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("wu_id", "sha256"),
    )


def downgrade() -> None:
    for table in ("results", "work_units", "history", "networks", "experiments", "mlc_meta"):
        op.drop_table(table)
