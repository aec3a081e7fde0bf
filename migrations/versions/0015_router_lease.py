"""The router's lease: which node routes on this database, and since which epoch. One row per
lease name; the node that holds it renews `expires_at` (database clock, float seconds; when it
last did: `renewed_at`), and
every routing transaction checks `epoch` (storage/lease.py). `holder_watched`: the holder also
holds the PostgreSQL advisory lock that tells the other nodes its session is alive.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "router_leases",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("holder_watched", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("claimed_at", sa.Float(), nullable=False),
        sa.Column("renewed_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("router_leases")
