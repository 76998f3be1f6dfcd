"""policy_reviews: the policy gate's tickets, each bound to one browser and answered once

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import provider.storage.models

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_reviews",
        sa.Column("ticket_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("browser", sa.String(length=64), nullable=False),
        sa.Column("callback", sa.String(length=2048), nullable=False),
        sa.Column("expires_at", provider.storage.models.UTCDateTime(), nullable=False),
        sa.Column("answer", sa.String(length=16), nullable=True),
        sa.Column("answered_at", provider.storage.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    op.create_index(op.f("ix_policy_reviews_expires_at"), "policy_reviews", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_policy_reviews_expires_at"), table_name="policy_reviews")
    op.drop_table("policy_reviews")
