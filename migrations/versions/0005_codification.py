"""Codification, spam and collaboration: categories and their rules, the classifier's training
examples, internal notes on tasks, expert consults by e-mail and reminders.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Frozen: every table is spelled out here with explicit constraint names (those the naming
convention of dispatcher.storage.tables produces); never import the live tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _log_id() -> sa.types.TypeEngine:
    # 64-bit on PostgreSQL; on SQLite the rowid alias must be spelled INTEGER.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "categories",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("queue", sa.String(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_categories"),
    )
    op.create_table(
        "category_rules",
        sa.Column("id", _log_id(), autoincrement=True, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("pattern", sa.Text(), nullable=False),
        sa.Column("match", sa.String(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_category_rules"),
    )
    op.create_index("ix_category_rules_position_id", "category_rules", ["position", "id"])
    op.create_table(
        "category_examples",
        sa.Column("id", _log_id(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_category_examples"),
    )
    op.create_index("ix_category_examples_task_id", "category_examples", ["task_id"])
    op.create_table(
        "task_notes",
        sa.Column("id", _log_id(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_task_notes"),
    )
    op.create_index("ix_task_notes_task_id_id", "task_notes", ["task_id", "id"])
    op.create_table(
        "consults",
        sa.Column("token", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("agent_id", sa.String(), nullable=False),
        sa.Column("expert", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("token", name="pk_consults"),
    )
    op.create_index("ix_consults_task_id", "consults", ["task_id"])
    op.create_index("ix_consults_message_id", "consults", ["message_id"])
    op.create_table(
        "reminders",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("agent_id", sa.String(), nullable=False),
        sa.Column("due_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reminders"),
    )
    op.create_index("ix_reminders_state_due_at", "reminders", ["state", "due_at"])
    op.create_index("ix_reminders_task_id", "reminders", ["task_id"])


def downgrade() -> None:
    op.drop_table("reminders")
    op.drop_table("consults")
    op.drop_table("task_notes")
    op.drop_table("category_examples")
    op.drop_table("category_rules")
    op.drop_table("categories")
