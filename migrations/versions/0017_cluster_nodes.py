"""The nodes of a cluster and where each can be reached: every `serve` writes its row when it
starts (its name, the host other nodes reach it by, and the URL of each endpoint it serves:
`http`, `console`, `cti`), so that a node that does not route can pass its agents' sockets and
HTTP requests on to the one that does (storage/nodes.py).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_nodes",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("endpoints", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cluster_nodes")
