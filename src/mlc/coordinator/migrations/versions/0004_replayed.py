"""Each judged result records how many of its unit's segments the validator replayed, so a dataset
can say how each network's units were checked.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("replayed", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.drop_column("replayed")
