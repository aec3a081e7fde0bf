"""Answers: the library of standard answers and its version history, the knowledge base and
its /help feedback, the response-mode rules (per queue and category, per agent review share)
and the review items of the quality review.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

Frozen: every table is spelled out here with explicit constraint names (those the naming
convention of dispatcher.storage.tables produces); never import the live tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _log_id() -> sa.types.TypeEngine:
    # 64-bit on PostgreSQL; on SQLite the rowid alias must be spelled INTEGER.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "answers",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("language", sa.String(), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_answers"),
    )
    op.create_table(
        "answer_versions",
        sa.Column("answer_id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("language", sa.String(), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("answer_id", "version", name="pk_answer_versions"),
    )
    op.create_table(
        "kb_articles",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("language", sa.String(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kb_articles"),
    )
    op.create_table(
        "kb_feedback",
        sa.Column("id", _log_id(), autoincrement=True, nullable=False),
        sa.Column("article_id", sa.String(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("helped", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_kb_feedback"),
    )
    op.create_index("ix_kb_feedback_article_id", "kb_feedback", ["article_id"])
    op.create_table(
        "response_rules",
        sa.Column("queue", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("review_share", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("queue", "category", name="pk_response_rules"),
    )
    op.create_table(
        "review_agents",
        sa.Column("agent_id", sa.String(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", name="pk_review_agents"),
    )
    op.create_table(
        "review_items",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("agent_id", sa.String(), nullable=True),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("answer_id", sa.String(), nullable=True),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("queue", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("reviewer", sa.String(), nullable=True),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("max_score", sa.Integer(), nullable=True),
        sa.Column("checklist", sa.JSON(), nullable=False),
        sa.Column("final_text", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_items"),
    )
    op.create_index(
        "ix_review_items_state_created_at", "review_items", ["state", "created_at"]
    )
    op.create_index("ix_review_items_task_id", "review_items", ["task_id"])


def downgrade() -> None:
    op.drop_table("review_items")
    op.drop_table("review_agents")
    op.drop_table("response_rules")
    op.drop_table("kb_feedback")
    op.drop_table("kb_articles")
    op.drop_table("answer_versions")
    op.drop_table("answers")
