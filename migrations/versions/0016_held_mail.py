"""Mail held by a node that does not route (a standby or an edge node): the raw message and its
envelope, committed before the node answers 250, until the router takes it in
(channels/email/held.py). A row is deleted once its message is stored as mail; one that could
not be taken in yet waits for `next_attempt_at`.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "held_mail",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("node", sa.String(), nullable=False),
        sa.Column("queue", sa.String(), nullable=False),
        sa.Column("envelope_from", sa.String(), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("verdict", sa.JSON(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_held_mail_next_attempt_at", "held_mail", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_held_mail_next_attempt_at", table_name="held_mail")
    op.drop_table("held_mail")
