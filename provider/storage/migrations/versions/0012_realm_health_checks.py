"""realm_health_checks: each stored run of `umpass realm-check`, for the web service to show

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import provider.storage.models

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "realm_health_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("checked_at", provider.storage.models.UTCDateTime(), nullable=False),
        sa.Column("realm", sa.String(length=255), nullable=False),
        sa.Column("readable", sa.Boolean(), nullable=False),
        sa.Column("healthy", sa.Boolean(), nullable=False),
        sa.Column("drift_items", sa.Integer(), nullable=False),
        sa.Column("failed_checks", sa.Integer(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("told", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_realm_health_checks_checked_at"), "realm_health_checks", ["checked_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_realm_health_checks_checked_at"), table_name="realm_health_checks")
    op.drop_table("realm_health_checks")
