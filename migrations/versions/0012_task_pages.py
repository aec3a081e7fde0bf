"""Task pages: indexes for the keyset listing of tasks, newest first by (created_at, id), with
or without a queue or an agent filter (the API's `GET /api/v1/tasks` pages).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tasks_created_at_id", "tasks", ["created_at", "id"])
    op.create_index("ix_tasks_queue_created_at_id", "tasks", ["queue", "created_at", "id"])
    op.create_index("ix_tasks_agent_id_created_at", "tasks", ["agent_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_agent_id_created_at", "tasks")
    op.drop_index("ix_tasks_queue_created_at_id", "tasks")
    op.drop_index("ix_tasks_created_at_id", "tasks")
