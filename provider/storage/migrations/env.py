"""Alembic environment: runs against the connection `provider.storage.migrate` hands in."""

from __future__ import annotations

from alembic import context

from provider.storage.models import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite can only alter tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
