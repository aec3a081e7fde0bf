"""The agent's desk: Cc and Reply-To of each e-mail, the Content-ID of inline attachments, files an agent uploads for a reply, accounts that sign
in with a password, secrets kept in the database (the console's token key, so every command on
the same database signs with the server's key), and disposition codes per queue.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Frozen: every table is spelled out here with explicit constraint names (those the naming
convention of dispatcher.storage.tables produces); never import the live tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("email_messages") as batch:
        batch.add_column(sa.Column("cc_addrs", sa.JSON(), nullable=False,
                                   server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("reply_to", sa.String(), nullable=True))
    with op.batch_alter_table("email_attachments") as batch:
        batch.add_column(sa.Column("content_id", sa.String(), nullable=True))
    with op.batch_alter_table("queues") as batch:
        batch.add_column(sa.Column("dispositions", sa.JSON(), nullable=False,
                                   server_default=sa.text("'[]'")))
    op.create_table(
        "email_uploads",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("filename", sa.String(), nullable=False),
        sa.Column("content_type", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_email_uploads"),
    )
    op.create_index("ix_email_uploads_owner", "email_uploads", ["owner"])
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
    )
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_secrets"),
    )


def downgrade() -> None:
    op.drop_table("secrets")
    op.drop_table("accounts")
    op.drop_index("ix_email_uploads_owner", table_name="email_uploads")
    op.drop_table("email_uploads")
    with op.batch_alter_table("queues") as batch:
        batch.drop_column("dispositions")
    with op.batch_alter_table("email_attachments") as batch:
        batch.drop_column("content_id")
    with op.batch_alter_table("email_messages") as batch:
        batch.drop_column("reply_to")
        batch.drop_column("cc_addrs")
