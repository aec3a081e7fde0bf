"""Request numbers from the database: on PostgreSQL the sequence `email_request_numbers`,
starting after the highest request number stored, from which the transaction that stores an
e-mail task takes its number (so two processes on one database never give the same one; a
number taken by a transaction that rolled back is a gap). SQLite needs nothing: every
transaction there is `BEGIN IMMEDIATE` (one writer), so the highest stored number plus one,
read in the storing transaction, is race-free.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQUENCE = "email_request_numbers"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    last = bind.execute(sa.text("SELECT max(number) FROM email_requests")).scalar() or 0
    # A literal, not a parameter: CREATE SEQUENCE takes no bound values.
    op.execute(f"CREATE SEQUENCE {SEQUENCE} AS bigint START WITH {int(last) + 1}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP SEQUENCE IF EXISTS {SEQUENCE}")
