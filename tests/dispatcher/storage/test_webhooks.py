"""The `WebhookStore` (dispatcher/storage/webhooks.py): the same contract on `MemoryWebhooks` and
on `SqlWebhooks` over SQLite and PostgreSQL (subscriptions, fan-out of committed events after
the cursors, due deliveries, attempts, dead letters, redelivery, paging); the SQL store's hold on
a gap in a log; and migration 0011, upgrading and downgrading."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from dispatcher.domain import events as ev
from dispatcher.service.ports import WebhookSubscription
from dispatcher.service.webhooks import matches
from dispatcher.storage import schema
from dispatcher.storage import tables as t
from dispatcher.storage.engine import make_engine
from dispatcher.storage.rows import event_row
from dispatcher.storage.webhooks import MemoryWebhooks, SqlWebhooks
from tests.dispatcher.storage.test_store_contract import fired
from tests.dispatcher.storage.wiring import url_for, wire

T0 = 1_700_000_000.0
BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class H:
    store: Any
    wait: Callable[[Any], Any]
    append: Callable[[ev.Event], str]  # commit one event; its webhook event id


def sql_append(engine: sa.Engine) -> Callable[[ev.Event], str]:
    def append(event: ev.Event) -> str:
        log = "task" if event.task_id is not None else "agent"
        table = t.task_events if log == "task" else t.agent_events
        with engine.begin() as conn:
            new = conn.execute(table.insert().values(**event_row(event))).inserted_primary_key
        return f"{log}-{new[0]}"

    return append


@pytest.fixture(params=BACKENDS)
def h(request: pytest.FixtureRequest) -> Iterator[H]:
    if request.param == "memory":
        m = MemoryWebhooks()
        yield H(m, fired, m.append)
        return
    url = url_for(request.param, request)
    schema.upgrade(url)
    w = wire(url)
    yield H(SqlWebhooks(w.pool), w.wait, sql_append(w.engine))
    w.close()


def sub(sub_id: str = "s1", kinds: tuple[str, ...] = ("task.*",)) -> WebhookSubscription:
    return WebhookSubscription(sub_id, f"https://{sub_id}.example/hook", kinds, T0, "op")


def created(task: str = "t1", kind: str = ev.TASK_CREATED, at: float = T0) -> ev.Event:
    return ev.Event(kind, at, task, None, ev.SYSTEM, {"queue": "support", "n": [1, 2]})


def audit(at: float = T0) -> ev.Event:
    return ev.Event(ev.CONFIG_CHANGED, at, None, "op", "op", {"what": "webhook"})


def test_subscriptions_are_kept_without_their_secret(h: H) -> None:
    h.wait(h.store.add_subscription(sub("s2", ("*",)), "secret-two", [audit()]))
    h.wait(h.store.add_subscription(sub("s1"), "secret-one"))
    assert h.wait(h.store.subscriptions()) == [sub("s1"), sub("s2", ("*",))]
    assert h.wait(h.store.subscription("s2")) == sub("s2", ("*",))
    assert h.wait(h.store.subscription("nope")) is None
    assert h.wait(h.store.remove_subscription("s2", [audit()])) is True
    assert h.wait(h.store.remove_subscription("s2")) is False
    assert h.wait(h.store.subscriptions()) == [sub("s1")]


def test_only_matching_events_after_the_cursor_become_deliveries_once(h: H) -> None:
    h.append(created("before"))
    h.wait(h.store.add_subscription(sub(), "secret-one", [audit()]))
    first = h.append(created("t1"))
    h.append(audit())  # agent log, not task.*
    second = h.append(created("t1", ev.TASK_QUEUED, T0 + 1))
    assert h.wait(h.store.fan_out(T0 + 10, 5.0, 100, matches)) == 2
    assert h.wait(h.store.fan_out(T0 + 10, 5.0, 100, matches)) == 0  # cursor moved
    due = h.wait(h.store.due(T0 + 10, 10))
    assert [(d.event_id, d.subscription_id, d.url, d.secret, d.attempts) for d in due] == [
        (first, "s1", "https://s1.example/hook", "secret-one", 0),
        (second, "s1", "https://s1.example/hook", "secret-one", 0)]
    assert due[0].payload == {"id": first, "kind": "task.created", "at": T0, "task": "t1",
                              "agent": None, "actor": "system",
                              "data": {"queue": "support", "n": [1, 2]}}
    listed = h.wait(h.store.deliveries("s1", None, 10, None))
    assert [d.event_id for d in listed] == [second, first]  # newest first
    assert [d.state for d in listed] == ["pending", "pending"]


def test_attempts_dead_letters_redelivery_and_paging(h: H) -> None:
    h.wait(h.store.add_subscription(sub(), "secret-one"))
    for i in range(3):
        h.append(created(f"t{i}"))
    h.wait(h.store.fan_out(T0, 5.0, 100, matches))
    a, b, c = sorted(d.id for d in h.wait(h.store.due(T0, 10)))
    h.wait(h.store.delivered(a, T0 + 1, 200))
    h.wait(h.store.failed(b, T0 + 1, 500, "HTTP 500", T0 + 6))
    h.wait(h.store.failed(c, T0 + 1, None, "x" * 2000, None))
    assert [d.id for d in h.wait(h.store.due(T0 + 5, 10))] == []
    assert [d.id for d in h.wait(h.store.due(T0 + 6, 10))] == [b]
    assert [d.id for d in h.wait(h.store.due(T0 + 6, 10, [b]))] == []
    dead = h.wait(h.store.deliveries("s1", "dead", 10, None))
    assert [(d.id, d.attempts, d.last_status, len(d.last_error), d.next_attempt_at)
            for d in dead] == [(c, 1, None, 500, None)]
    done = h.wait(h.store.deliveries("s1", "delivered", 10, None))
    assert [(d.id, d.attempts, d.last_status, d.delivered_at) for d in done] == [
        (a, 1, 200, T0 + 1)]
    assert [d.id for d in h.wait(h.store.deliveries("s1", None, 2, None))] == [c, b]
    assert [d.id for d in h.wait(h.store.deliveries("s1", None, 2, b))] == [a]
    assert h.wait(h.store.dead_count()) == 1
    assert h.wait(h.store.redeliver("s1", c, T0 + 7, [audit()])) is True
    assert h.wait(h.store.dead_count()) == 0
    assert h.wait(h.store.redeliver("other", c, T0 + 7)) is False
    (again,) = [d for d in h.wait(h.store.due(T0 + 7, 10)) if d.id == c]
    assert again.attempts == 0


def test_each_subscription_gets_its_share_of_due_deliveries(h: H) -> None:
    h.wait(h.store.add_subscription(sub("s1"), "secret-one"))
    h.wait(h.store.add_subscription(sub("s2"), "secret-two"))
    for i in range(5):
        h.append(created(f"t{i}"))
    h.wait(h.store.fan_out(T0, 5.0, 100, matches))
    due = h.wait(h.store.due(T0, 2))
    assert sorted(d.subscription_id for d in due) == ["s1", "s1", "s2", "s2"]


def test_prune_forgets_old_delivered_deliveries_only(h: H) -> None:
    h.wait(h.store.add_subscription(sub(), "secret-one"))
    for i in range(3):
        h.append(created(f"t{i}"))
    h.wait(h.store.fan_out(T0, 5.0, 100, matches))
    a, b, c = sorted(d.id for d in h.wait(h.store.due(T0, 10)))
    h.wait(h.store.delivered(a, T0 + 1, 200))
    h.wait(h.store.delivered(b, T0 + 100, 200))
    h.wait(h.store.failed(c, T0 + 1, 500, "HTTP 500", None))
    assert h.wait(h.store.prune(T0 + 50)) == 1
    assert sorted(d.id for d in h.wait(h.store.deliveries("s1", None, 10, None))) == [b, c]


def test_removing_a_subscription_removes_its_deliveries(h: H) -> None:
    h.wait(h.store.add_subscription(sub(), "secret-one"))
    h.append(created())
    h.wait(h.store.fan_out(T0, 5.0, 100, matches))
    h.wait(h.store.remove_subscription("s1"))
    assert h.wait(h.store.due(T0, 10)) == []


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    url = url_for(request.param, request)
    schema.upgrade(url)
    w = wire(url)
    yield w, SqlWebhooks(w.pool)
    w.close()


def test_a_missing_id_holds_the_cursor_until_it_settles(sql: tuple[Any, Any]) -> None:
    """An id taken by a transaction not yet committed (or rolled back) must not be skipped
    while it may still commit; once the event after it is `settle` seconds old, it is."""
    w, store = sql
    w.wait(store.add_subscription(sub(), "secret-one"))
    first = int(sql_append(w.engine)(created("t1")).split("-")[1])
    with w.engine.begin() as conn:  # id first + 1 is missing (PostgreSQL: another transaction)
        conn.execute(t.task_events.insert().values(id=first + 2,
                                                   **event_row(created("t3", at=T0 + 1))))
    assert w.wait(store.fan_out(T0 + 2, 5.0, 100, matches)) == 1  # t1 only
    assert w.wait(store.fan_out(T0 + 7, 5.0, 100, matches)) == 1  # t3, the gap settled
    assert sorted(d.payload["task"] for d in w.wait(store.due(T0 + 7, 10))) == ["t1", "t3"]


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


WEBHOOK_TABLES = {"webhook_subscriptions", "webhook_deliveries"}


def test_0011_adds_the_webhook_tables_and_drops_them_again(empty_url: str) -> None:
    schema.upgrade(empty_url, "0010")
    assert not WEBHOOK_TABLES & table_names(empty_url)
    schema.upgrade(empty_url, "0011")
    assert table_names(empty_url) >= WEBHOOK_TABLES
    schema.downgrade(empty_url, "0010")
    assert not WEBHOOK_TABLES & table_names(empty_url)
