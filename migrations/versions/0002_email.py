"""The e-mail channel: request numbers, the messages of each task's conversation (inbound and
outbound, raw and parsed) and their attachments.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02

Frozen: every table is spelled out here with explicit constraint names (those the naming
convention of dispatcher.storage.tables produces); never import the live tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _log_id() -> sa.types.TypeEngine:
    # 64-bit on PostgreSQL; on SQLite the rowid alias must be spelled INTEGER.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "email_requests",
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("number", name="pk_email_requests"),
        sa.UniqueConstraint("task_id", name="uq_email_requests_task_id"),
    )
    op.create_table(
        "email_messages",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("in_reply_to", sa.String(), nullable=True),
        sa.Column("refs", sa.JSON(), nullable=False),
        sa.Column("peer", sa.String(), nullable=True),
        sa.Column("from_addr", sa.String(), nullable=True),
        sa.Column("to_addrs", sa.JSON(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("defects", sa.JSON(), nullable=False),
        sa.Column("malformed", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_email_messages"),
        sa.UniqueConstraint("source", name="uq_email_messages_source"),
    )
    op.create_index(
        "ix_email_messages_task_id_created_at", "email_messages", ["task_id", "created_at"]
    )
    op.create_index("ix_email_messages_message_id", "email_messages", ["message_id"])
    op.create_index(
        "ix_email_messages_peer_kind_created_at", "email_messages", ["peer", "kind", "created_at"]
    )
    op.create_table(
        "email_attachments",
        sa.Column("id", _log_id(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(), nullable=True),
        sa.Column("content_type", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("path", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["email_messages.id"],
            name="fk_email_attachments_message_id_email_messages",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_email_attachments"),
    )
    op.create_index("ix_email_attachments_message_id", "email_attachments", ["message_id"])


def downgrade() -> None:
    op.drop_table("email_attachments")
    op.drop_table("email_messages")
    op.drop_table("email_requests")
