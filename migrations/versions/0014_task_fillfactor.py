"""Room on each page of `tasks` for the next versions of its rows (PostgreSQL): fillfactor 70.

A task's row is updated a few times in its life (offered, assigned, completed), each time a new
version of the whole row. With full pages (the default fillfactor, 100) each new version goes to
another page: the old version is locked in a WAL record of its own, and the new one is logged
whole. With room left on the page, PostgreSQL keeps the new version on the same page and logs
only the bytes that changed (the columns before `state`, the attributes among them, are the
same): about 400 bytes less WAL per routed task in bench/durable.py. Only pages filled from now
on keep the room; the table is not rewritten. SQLite has no such setting.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 70


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE tasks SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tasks RESET (fillfactor)")
