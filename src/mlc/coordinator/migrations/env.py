"""Alembic's environment: migrations run on the connection `mlc.coordinator.connect` hands over."""

from alembic import context

from mlc.coordinator._schema import metadata

connection = context.config.attributes["connection"]
# batch mode: SQLite cannot ALTER most things in place, so Alembic copies the table there
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
