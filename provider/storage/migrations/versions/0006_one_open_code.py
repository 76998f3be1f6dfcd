"""activation codes: at most one open (unused, unrevoked) code per student

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 02:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OPEN = "used_at IS NULL AND revoked_at IS NULL"


def upgrade() -> None:
    # Older rows may hold several open codes for one student (before this rule): keep
    # the newest open, revoke the rest, so the index can be built.
    op.execute(
        sa.text(
            "UPDATE activation_codes SET revoked_at = issued_at "
            "WHERE used_at IS NULL AND revoked_at IS NULL AND id NOT IN "
            "(SELECT MAX(id) FROM activation_codes "
            "WHERE used_at IS NULL AND revoked_at IS NULL GROUP BY user_id)"
        )
    )
    op.create_index(
        "ux_activation_codes_one_open",
        "activation_codes",
        ["user_id"],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("ux_activation_codes_one_open", table_name="activation_codes")
