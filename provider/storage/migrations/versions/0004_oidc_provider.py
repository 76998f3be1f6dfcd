"""oidc provider: authorization codes and access tokens

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 02:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import provider.storage.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oidc_authorization_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("keycloak_id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("redirect_uri", sa.String(length=512), nullable=False),
        sa.Column("scope", sa.String(length=256), nullable=False),
        sa.Column("nonce", sa.String(length=256), nullable=True),
        sa.Column("code_challenge", sa.String(length=128), nullable=True),
        sa.Column("code_challenge_method", sa.String(length=16), nullable=True),
        sa.Column("auth_time", sa.Integer(), nullable=False),
        sa.Column("expires_at", provider.storage.models.UTCDateTime(), nullable=False),
        sa.Column("used_at", provider.storage.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    op.create_index(
        "ix_oidc_authorization_codes_expires_at", "oidc_authorization_codes", ["expires_at"]
    )
    op.create_table(
        "oidc_access_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("keycloak_id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=256), nullable=False),
        sa.Column("expires_at", provider.storage.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_oidc_access_tokens_expires_at", "oidc_access_tokens", ["expires_at"])
    op.create_index("ix_oidc_access_tokens_code_hash", "oidc_access_tokens", ["code_hash"])


def downgrade() -> None:
    op.drop_index("ix_oidc_access_tokens_code_hash", table_name="oidc_access_tokens")
    op.drop_index("ix_oidc_access_tokens_expires_at", table_name="oidc_access_tokens")
    op.drop_table("oidc_access_tokens")
    op.drop_index("ix_oidc_authorization_codes_expires_at", table_name="oidc_authorization_codes")
    op.drop_table("oidc_authorization_codes")
