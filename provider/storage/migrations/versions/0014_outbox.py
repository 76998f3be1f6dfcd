"""outbox: events for downstream systems and their delivery to each endpoint

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import provider.storage.models

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", provider.storage.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uuid"),
    )
    op.create_index(op.f("ix_outbox_events_user_id"), "outbox_events", ["user_id"])
    op.create_index(op.f("ix_outbox_events_created_at"), "outbox_events", ["created_at"])
    op.create_table(
        "outbox_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", provider.storage.models.UTCDateTime(), nullable=False),
        sa.Column("lease_until", provider.storage.models.UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("delivered_at", provider.storage.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["outbox_events.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "endpoint"),
    )
    op.create_index(
        "ix_outbox_deliveries_order", "outbox_deliveries", ["endpoint", "user_id", "event_id"]
    )
    op.create_index(
        "ix_outbox_deliveries_due", "outbox_deliveries", ["endpoint", "state", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_deliveries_due", table_name="outbox_deliveries")
    op.drop_index("ix_outbox_deliveries_order", table_name="outbox_deliveries")
    op.drop_table("outbox_deliveries")
    op.drop_index(op.f("ix_outbox_events_created_at"), table_name="outbox_events")
    op.drop_index(op.f("ix_outbox_events_user_id"), table_name="outbox_events")
    op.drop_table("outbox_events")
