"""Replication on a second host of the same kernel class, and withdrawal of networks built on a result
of a host later found untrusted.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_units") as batch:
        batch.add_column(sa.Column("quorum", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("replica_class", sa.String(200)))
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("kernel_class", sa.String(200)))
        batch.add_column(sa.Column("training_sha256", sa.String(64)))
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("kernel_class", sa.String(200)))
        batch.add_column(sa.Column("agree_streak", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "withdrawals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False, index=True),
        sa.Column("net_id", sa.String(200), nullable=False),
        sa.Column("work_units", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("applied_at", sa.DateTime()),
    )


def downgrade() -> None:
    op.drop_table("withdrawals")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("agree_streak")
        batch.drop_column("kernel_class")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("training_sha256")
        batch.drop_column("kernel_class")
    with op.batch_alter_table("work_units") as batch:
        batch.drop_column("replica_class")
        batch.drop_column("quorum")
