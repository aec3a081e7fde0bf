"""lookups.py: the reads before an intake's writes give what the separate reads give, on SQLite
and PostgreSQL, and on PostgreSQL they are one statement (a round trip) unless a list is longer
than a chunk."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from dispatcher.service.ports import ACK_KIND
from dispatcher.storage import lookups, schema
from dispatcher.storage import tables as t
from dispatcher.storage.engine import make_engine
from dispatcher.storage.lookups import Lookups, thd_lookups


def message(id_: str, peer: str, kind: str, at: float) -> dict:
    return {"id": id_, "task_id": "t-old", "direction": "out", "kind": kind, "created_at": at,
            "refs": [], "peer": peer, "to_addrs": [peer], "subject": "s", "text_body": "",
            "html_body": "", "raw": b"", "defects": [], "malformed": False, "status": "sent"}


@pytest.fixture
def engine(sql_url: str) -> Iterator[sa.Engine]:
    yield from filled(sql_url)


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    schema.upgrade(pg_url)
    yield from filled(pg_url)


def filled(url: str) -> Iterator[sa.Engine]:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(t.customers.insert(), [
            {"id": "c1", "name": "Ann", "created_at": 1.0},
            {"id": "c2", "name": "Bob", "created_at": 1.0}])
        conn.execute(t.customer_identities.insert(), [
            {"kind": "email", "value": "ann@example.org", "customer_id": "c1"},
            {"kind": "phone", "value": "+3312345678", "customer_id": "c2"}])
        conn.execute(t.tasks.insert(), [{
            "id": "t-old", "channel": "email", "queue": "support", "created_at": 1.0,
            "base_skills": {}, "priority": 0, "attributes": {}, "state": "queued", "step": 0,
            "required_skills": {}}])
        conn.execute(t.email_messages.insert(), [
            message("m1", "ann@example.org", ACK_KIND, 100.5),
            message("m2", "ann@example.org", ACK_KIND, 250.25),
            message("m3", "ann@example.org", "reply", 900.0),  # a reply: not an ack
            message("m4", "bob@example.org", "reply", 300.0)])
    yield engine
    engine.dispose()


ASKED = {"numbers": 3, "peers": {"ann@example.org", "bob@example.org", "new@example.org"},
         "identities": {("email", "ann@example.org"), ("phone", "+3312345678"),
                        ("email", "new@example.org")},
         "ids": ["t-old", "t-new"]}


def expected(numbers: list[int]) -> Lookups:
    return Lookups(numbers=numbers, acks={"ann@example.org": 250.25},
                   known={("email", "ann@example.org"): "c1", ("phone", "+3312345678"): "c2"},
                   stored={"t-old"})


def test_the_reads_give_what_the_separate_reads_give(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        found = thd_lookups(conn, **ASKED)
    first = found.numbers[0]
    assert found == expected([first, first + 1, first + 2])


def test_nothing_asked_reads_nothing(engine: sa.Engine) -> None:
    statements = _counted(engine)
    with engine.begin() as conn:
        assert thd_lookups(conn) == Lookups()
    assert [s for s in statements if not s.startswith("BEGIN")] == []


@pytest.mark.postgres
def test_on_postgresql_the_reads_are_one_statement(pg_engine: sa.Engine) -> None:
    engine = pg_engine
    statements = _counted(engine)
    with engine.begin() as conn:
        found = thd_lookups(conn, **ASKED)
    assert len(statements) == 1 and "UNION ALL" in statements[0]
    first = found.numbers[0]
    assert found == expected([first, first + 1, first + 2])


@pytest.mark.postgres
def test_a_list_longer_than_a_chunk_is_read_apart(pg_engine: sa.Engine,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    engine = pg_engine
    monkeypatch.setattr(lookups, "IN_CHUNK", 2)
    monkeypatch.setattr(lookups, "chunks", lambda items: [items[i:i + 2]
                                                          for i in range(0, len(items), 2)])
    statements = _counted(engine)
    with engine.begin() as conn:
        found = thd_lookups(conn, **ASKED)
    assert len(statements) > 1 and not any("UNION ALL" in s for s in statements)
    first = found.numbers[0]
    assert found == expected([first, first + 1, first + 2])


def _counted(engine: sa.Engine) -> list[str]:
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *rest: statements.append(statement))
    return statements
