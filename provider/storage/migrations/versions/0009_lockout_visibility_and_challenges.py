"""identify lockouts: when the latest lock began; proof-of-work challenges redeemed

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-02 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import provider.storage.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identify_lockouts") as batch_op:
        batch_op.add_column(
            sa.Column("locked_at", provider.storage.models.UTCDateTime(), nullable=True)
        )
        batch_op.create_index("ix_identify_lockouts_locked_at", ["locked_at"])
        batch_op.create_index("ix_identify_lockouts_locked_until", ["locked_until"])
    op.create_table(
        "used_challenges",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", provider.storage.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_index("ix_used_challenges_expires_at", "used_challenges", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_used_challenges_expires_at", table_name="used_challenges")
    op.drop_table("used_challenges")
    with op.batch_alter_table("identify_lockouts") as batch_op:
        batch_op.drop_index("ix_identify_lockouts_locked_until")
        batch_op.drop_index("ix_identify_lockouts_locked_at")
        batch_op.drop_column("locked_at")
