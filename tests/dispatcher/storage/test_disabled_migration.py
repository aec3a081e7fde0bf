"""Revision 0009 (queues and agents that can be disabled) on SQLite and PostgreSQL: it upgrades
a database with agents, their skills and memberships in it (on SQLite a copy of `agents` would
trip over the tables that point to it), everything stays enabled, and it downgrades again
keeping the data."""

from __future__ import annotations

import sqlalchemy as sa

from dispatcher.storage import schema
from dispatcher.storage.engine import make_engine

AGENT = {"id": "ann", "name": "Ann", "capacity_email": 3, "capacity_phone": 1,
         "channels": '["email", "phone"]', "created_at": 1.0}
QUEUE = {"name": "support", "requirement": "{}", "steps": "[]", "mode": "push",
         "agent_choice": "longest_idle", "priority": 0, "sl_target": "{}", "sl_share": 0.8,
         "offer_timeout": "{}", "wrap_up_seconds": 30.0, "calendar": None,
         "deadline_rule": None, "dispositions": "[]"}


def rows(url: str, query: str) -> list[tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def test_0009_upgrades_a_database_with_agents_and_downgrades_again(empty_url: str) -> None:
    schema.upgrade(empty_url, "0008")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            columns = ", ".join(QUEUE)
            conn.execute(sa.text(f"insert into queues ({columns}) values "
                                 f"({', '.join(':' + k for k in QUEUE)})"), QUEUE)
            columns = ", ".join(AGENT)
            conn.execute(sa.text(f"insert into agents ({columns}) values "
                                 f"({', '.join(':' + k for k in AGENT)})"), AGENT)
            conn.execute(sa.text("insert into agent_skills values ('ann', 'support', 7)"))
            conn.execute(sa.text("insert into agent_queues values ('ann', 'support')"))
    finally:
        engine.dispose()

    schema.upgrade(empty_url, "0009")

    assert schema.current(empty_url) == "0009"
    assert rows(empty_url, "select id, disabled from agents") == [("ann", False)]
    assert rows(empty_url, "select name, disabled from queues") == [("support", False)]
    assert rows(empty_url, "select * from agent_skills") == [("ann", "support", 7)]

    schema.downgrade(empty_url, "0008")

    assert rows(empty_url, "select id, name from agents") == [("ann", "Ann")]
    assert rows(empty_url, "select * from agent_queues") == [("ann", "support")]
