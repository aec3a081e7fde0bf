"""Checkpoints of today's figures: the state of the day's fold (`metrics.Tally`, as JSON text),
saved by the process that routes at most every `[reports] checkpoint_seconds` and when it stops,
so that a restart folds only the log after it (storage/report_checkpoints.py).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_checkpoints",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("day_start", sa.Float(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("saved_at", sa.Float(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("report_checkpoints")
