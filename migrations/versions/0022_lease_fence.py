"""The router lease's fence as a function of the database (PostgreSQL only): it takes the
lease's fence lock shared, reads the lease's epoch in a statement of its own (a fresh
snapshot: the function is VOLATILE) and raises SQLSTATE SB001 when the epoch is not the one the
caller routes at. Being one statement that fails by itself, the fence can travel in the same
round trip as a transaction's first write instead of taking one of its own
(dispatcher/storage/fence.py). SQLite has no lease: nothing to do there.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FENCE = """
CREATE FUNCTION switchboard_fence(lease text, high integer, low integer, expected bigint)
RETURNS void LANGUAGE plpgsql VOLATILE AS $fence$
DECLARE
    found bigint;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(high, low);
    SELECT epoch INTO found FROM router_leases WHERE name = lease;
    IF found IS DISTINCT FROM expected THEN
        RAISE EXCEPTION USING ERRCODE = 'SB001', MESSAGE = 'lease ' || lease || ' is at epoch '
            || coalesce(found::text, 'none') || ', this node routed at ' || expected;
    END IF;
END
$fence$
"""


# No percent sign in the text: it goes through drivers that read one as a placeholder.


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FENCE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS switchboard_fence(text, integer, integer, bigint)")
