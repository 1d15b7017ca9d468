"""The volunteer server: experiments get a state (running, paused, cancelled, finished), a queue and
their layout's size; hosts (token hashes), every lease given (who may upload) and daemon heartbeats
get tables; hosts carry a trust state. The hand-kept schema version becomes "3", so
an mlc from before migrations refuses this database with its own message instead of misreading it.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="running"))
        batch.add_column(sa.Column("queue", sa.String(16), nullable=False, server_default="cpu"))
        batch.add_column(sa.Column("n_params", sa.Integer))
    op.execute("UPDATE experiments SET state = 'finished' WHERE finished_at IS NOT NULL")
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("description_json", sa.Text, nullable=False, server_default="{}"),
        sa.Column("test_queue", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("trust", sa.String(16), nullable=False, server_default="new"),
    )
    op.create_table(
        "daemons",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("last_pass_at", sa.DateTime(), nullable=False),
        sa.Column("last_pass_s", sa.Float, nullable=False),
        sa.Column("passes", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text),
    )
    op.create_table(
        "leases",
        sa.Column("wu_id", sa.String(200), sa.ForeignKey("work_units.id"), primary_key=True),
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("leased_at", sa.DateTime(), nullable=False),
    )
    op.execute("UPDATE mlc_meta SET value = '3' WHERE key = 'schema_version'")


def downgrade() -> None:
    op.execute("UPDATE mlc_meta SET value = '2' WHERE key = 'schema_version'")
    op.drop_table("leases")
    op.drop_table("daemons")
    op.drop_table("hosts")
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("n_params")
        batch.drop_column("queue")
        batch.drop_column("state")
