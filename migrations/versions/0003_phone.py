"""The phone channel: agents' phone accounts (SIP digest credentials as HA1 hashes, PBX
extensions) and the registrar's bindings (the contact each agent's phone registered last).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Frozen: every table is spelled out here with explicit constraint names (those the naming
convention of dispatcher.storage.tables produces); never import the live tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "phone_accounts",
        sa.Column("agent_id", sa.String(), nullable=False),
        sa.Column("sip_user", sa.String(), nullable=True),
        sa.Column("realm", sa.String(), nullable=False),
        sa.Column("ha1_md5", sa.String(), nullable=True),
        sa.Column("ha1_sha256", sa.String(), nullable=True),
        sa.Column("extension", sa.String(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", name="pk_phone_accounts"),
        sa.UniqueConstraint("sip_user", name="uq_phone_accounts_sip_user"),
        sa.UniqueConstraint("extension", name="uq_phone_accounts_extension"),
    )
    op.create_table(
        "phone_bindings",
        sa.Column("agent_id", sa.String(), nullable=False),
        sa.Column("contact", sa.String(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("cseq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", name="pk_phone_bindings"),
    )


def downgrade() -> None:
    op.drop_table("phone_bindings")
    op.drop_table("phone_accounts")
