"""An e-mail task's preview (the first lines of its first message) in a column of its own,
written once when the task is stored, and no longer inside its attributes: the router holds
every open task's attributes in memory, and the preview was about half of them (~200 bytes a
task) while only readers of the store show it (timelines, task views, the parked spam). Rows
stored before keep their preview inside their attributes, where the readers still find it.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("preview", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("preview")
