"""Queues and agents can be disabled (`switchboard queues disable NAME`, `agents disable ID`)
instead of removed: a disabled queue takes no new tasks and a disabled agent takes no work, and
both keep their configuration to be enabled again. Existing rows stay enabled.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("agents", "queues")


# Plain ALTER TABLE ADD / DROP COLUMN on both databases (SQLite >= 3.35 drops columns): a batch
# copy of `agents` would drop the table that agent_skills and agent_queues point to. A constant
# default (not an SQL expression) keeps SQLite's ADD COLUMN in place.


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("disabled", sa.Boolean(), nullable=False,
                                       server_default="0"))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "disabled")
