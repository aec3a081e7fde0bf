"""Request numbers come from the database (migration 0013, lookups.py `take_request_numbers`):
two stores on one database (two processes: the server and the CLI, two nodes) taking mail at
the same time never give the same number, each gives increasing numbers, and after the
migration numbering goes on after the requests already stored. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from dispatcher.service.ports import NewMail
from dispatcher.storage import schema
from dispatcher.storage import tables as t
from tests.dispatcher.storage.test_store_contract import ALICE, created, make_task
from tests.dispatcher.storage.wiring import Wiring, wire

ROUNDS, PER_ROUND = 4, 12  # per store: rounds of intakes queued in one reactor turn


def intake(w: Wiring, prefix: str, numbers: list[int]) -> None:
    """ROUNDS group commits of PER_ROUND new mail tasks each; their numbers, in call order."""
    for r in range(ROUNDS):
        calls = []
        for n in range(PER_ROUND):
            task = make_task(f"{prefix}{r}-{n}")
            calls.append(w.store.create_mail_task(NewMail(task, created(task)), ALICE, "A"))
        numbers.extend(w.wait(d).number for d in calls)


def test_two_stores_on_one_database_never_give_a_number_twice(sql_url: str) -> None:
    a, b = wire(sql_url), wire(sql_url)
    try:
        got: dict[str, list[int]] = {"a": [], "b": []}
        failures: list[BaseException] = []

        def run(w: Wiring, name: str) -> None:
            try:
                intake(w, name, got[name])
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(w, n)) for w, n in ((a, "a"), (b, "b"))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not failures, failures
        every = got["a"] + got["b"]
        assert len(every) == len(set(every)) == 2 * ROUNDS * PER_ROUND
        assert got["a"] == sorted(got["a"]) and got["b"] == sorted(got["b"])
        with a.engine.connect() as conn:
            stored = dict(conn.execute(sa.select(t.email_requests.c.number,
                                                 t.email_requests.c.task_id)).all())
        assert sorted(stored) == sorted(every)
        for name in "ab":  # each number names the task it was given to
            for i, number in enumerate(got[name]):
                assert stored[number] == f"{name}{i // PER_ROUND}-{i % PER_ROUND}"
    finally:
        a.close()
        b.close()


def test_after_the_migration_numbers_go_on_after_the_stored_ones(empty_url: str) -> None:
    schema.upgrade(empty_url, "0012")
    engine = sa.create_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO email_requests (number, task_id) VALUES (41, 'old')"))
    engine.dispose()
    schema.upgrade(empty_url)
    assert next_number(empty_url, "t1") == 42
    schema.downgrade(empty_url, "0012")  # and back: the sequence starts after 42 again
    schema.upgrade(empty_url)
    assert next_number(empty_url, "t2") == 43


def next_number(url: str, task_id: str) -> int:
    w = wire(url)
    try:
        task = make_task(task_id)
        return w.wait(w.store.create_mail_task(NewMail(task, created(task)), ALICE, "A")).number
    finally:
        w.close()
