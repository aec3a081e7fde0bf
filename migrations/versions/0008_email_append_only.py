"""E-mail messages are evidence, kept as they were stored: `email_messages` and
`email_attachments` become append-only like the event logs (no UPDATE, DELETE or, on
PostgreSQL, TRUNCATE), and a message's delivery status is appended to a new append-only table,
`email_statuses` (one row per change: sent, retrying, dead, bounced ...), instead of updating
the message.

A message's status is the newest `email_statuses` row for it, else the status it was stored
with. Messages stored before this revision keep their row as it is (its status column holds
the last status set before; nothing is copied), so the upgrade touches no data.

On SQLite, a later revision that rebuilds one of these tables (`batch_alter_table`) drops its
triggers with it and must create them again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

Frozen: every table is spelled out here with explicit constraint names (those the naming
convention of dispatcher.storage.tables produces); never import the live tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("email_messages", "email_attachments", "email_statuses")
# Made by revision 0001 for the event logs: raises "<table> is append-only".
PG_APPEND_ONLY_FUNCTION = "switchboard_append_only"


def upgrade() -> None:
    op.create_table(
        "email_statuses",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False,
                  autoincrement=True),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["email_messages.id"],
                                name="fk_email_statuses_message_id_email_messages"),
        sa.PrimaryKeyConstraint("id", name="pk_email_statuses"),
    )
    op.create_index("ix_email_statuses_message_id_id", "email_statuses", ["message_id", "id"])
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "sqlite":
            for verb in ("update", "delete"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
        elif dialect == "postgresql":
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {PG_APPEND_ONLY_FUNCTION}()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_APPEND_ONLY_FUNCTION}()"
            )
        else:
            raise NotImplementedError(f"append-only triggers for {dialect}")


def downgrade() -> None:
    """Back to messages whose status is updated in place: each message takes its newest
    appended status first (then the triggers and the status table go)."""
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "sqlite":
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        elif dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    newest = ("(SELECT s.{column} FROM email_statuses s WHERE s.id = (SELECT max(n.id) FROM "
              "email_statuses n WHERE n.message_id = email_messages.id))")
    op.execute(
        f"UPDATE email_messages SET status = {newest.format(column='status')}, "
        f"error = {newest.format(column='error')} WHERE EXISTS (SELECT 1 FROM email_statuses e "
        "WHERE e.message_id = email_messages.id)"
    )
    op.drop_index("ix_email_statuses_message_id_id", table_name="email_statuses")
    op.drop_table("email_statuses")
