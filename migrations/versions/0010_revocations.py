"""Revoked bearer tokens: one by one by `jti` (`revoked_tokens`), and every token of a subject
issued before a time (`revoked_subjects`: a disabled account, a changed password,
`switchboard token revoke`). The server loads both at start and polls them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(), primary_key=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
    )
    op.create_table(
        "revoked_subjects",
        sa.Column("subject", sa.String(), primary_key=True),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("revoked_subjects")
    op.drop_table("revoked_tokens")
