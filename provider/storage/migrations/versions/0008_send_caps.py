"""per-student send cap (contact_sends.user_id) and the daily text budget (send_days)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sends made before this have no student: they still count per contact and per flow.
    with op.batch_alter_table("contact_sends", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_contact_sends_user_at", ["user_id", "at"], unique=False)
    op.create_table(
        "send_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sms_sent", sa.Integer(), nullable=False),
        sa.Column("refused_student_cap", sa.Integer(), nullable=False),
        sa.Column("refused_sms_budget", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )


def downgrade() -> None:
    op.drop_table("send_days")
    with op.batch_alter_table("contact_sends", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_sends_user_at")
        batch_op.drop_column("user_id")
