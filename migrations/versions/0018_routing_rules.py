"""Routing rules as data (docs/routing.md):
  - requirement expressions: a queue's expression over agents' skills and attributes and tasks'
    attributes (`queues.expression`, "" for none; an escalation step's own expression lives in
    its `steps` item as "expression"), and each agent's attributes (`agents.attributes`:
    languages, tier, site...) that expressions read beside skills;
  - the blend: an agent's own interruption matrix (`agents.interruptions`, {held: [channels
    still offered]}; NULL: the centre's) and the agents a queue keeps free for its calls while
    they are at risk (`queues.reserve`).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05

Frozen: never import the live tables or the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("queues") as batch:
        batch.add_column(sa.Column("expression", sa.String(), nullable=False,
                                   server_default=sa.text("''")))
        batch.add_column(sa.Column("reserve", sa.Integer(), nullable=False,
                                   server_default=sa.text("0")))
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("attributes", sa.JSON(), nullable=False,
                                   server_default=sa.text("'{}'")))
        batch.add_column(sa.Column("interruptions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("interruptions")
        batch.drop_column("attributes")
    with op.batch_alter_table("queues") as batch:
        batch.drop_column("reserve")
        batch.drop_column("expression")
