"""A partial index of the replies sent with an answer of the library (`email.queued` events
whose data name an `answer_id`): every start reads the last 5,000 of them (the past replies the
suggestions learn from), which without it walked the whole event log, newest first, and all of
it when few replies used an answer (0.2 s for 700 k events warm, seconds from a cold disk, and
more every day). On PostgreSQL the index is built in the migration's transaction, which holds
writes to task_events meanwhile: run it while the service is stopped, as every migration.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_task_events_answered", "task_events", ["id"],
        sqlite_where=sa.text(
            "kind = 'email.queued' AND json_extract(data, '$.answer_id') IS NOT NULL"),
        postgresql_where=sa.text("kind = 'email.queued' AND (data ->> 'answer_id') IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_task_events_answered", table_name="task_events")
