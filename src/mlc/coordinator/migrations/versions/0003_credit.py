"""Volunteers and credit: an accounts table (key hashes, credit), hosts linked to an account and
holding their own credit, and each result's credit (granted when it was judged valid, revoked should
it be voided later).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _credit_columns() -> list[sa.Column]:
    return [
        sa.Column("credit", sa.Float, nullable=False, server_default="0"),
        sa.Column("rac", sa.Float, nullable=False, server_default="0"),
        sa.Column("rac_at", sa.DateTime()),
    ]


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        *_credit_columns(),
    )
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("account_id", sa.Integer))
        for column in _credit_columns():
            batch.add_column(column)
        batch.create_foreign_key("fk_hosts_account_id", "accounts", ["account_id"], ["id"])
        batch.create_index("ix_hosts_account_id", ["account_id"])
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("credit", sa.Float))
        batch.add_column(sa.Column("credited_at", sa.DateTime()))
        batch.create_index("ix_results_verdict_credited_at", ["verdict", "credited_at"])


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.drop_index("ix_results_verdict_credited_at")
        batch.drop_column("credited_at")
        batch.drop_column("credit")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_index("ix_hosts_account_id")
        batch.drop_constraint("fk_hosts_account_id", type_="foreignkey")
        for name in ("rac_at", "rac", "credit", "account_id"):
            batch.drop_column(name)
    op.drop_table("accounts")
