"""dispatcher.service.webhooks: validation of subscriptions (URL, kinds, secret), their audit,
the signature a receiver checks, the back-off schedule, dead letters and redelivery, bounded
concurrency, and a stop that leaves what was in flight pending; on `MemoryWebhooks` with a
`Clock` (no sleeps, no network)."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from dispatcher.domain import events as ev
from dispatcher.domain.errors import InvalidValue, UnknownDelivery, UnknownSubscription
from dispatcher.service.webhooks import (
    BACKOFF,
    JITTER,
    Deliverer,
    Webhooks,
    backoff,
    body_of,
    check_kinds,
    check_url,
    matches,
    signature,
)
from dispatcher.storage.webhooks import MemoryWebhooks
from tests.dispatcher.storage.test_store_contract import fired

T0 = 1_700_000_000.0
SECRET = "s3cret-s3cret-s3cret"


class Receiver:
    """A `WebhookPoster` whose answers the test gives: each post waits in `waiting`."""

    def __init__(self) -> None:
        self.waiting: list[tuple[str, dict[str, str], bytes, Deferred[int]]] = []
        self.auto: int | None = None  # answer every post at once with this status

    def post(self, url: str, headers: dict[str, str], body: bytes,
             timeout: float) -> Deferred[int]:
        if self.auto is not None:
            self.waiting.append((url, headers, body, succeed(self.auto)))
            return succeed(self.auto)
        d: Deferred[int] = Deferred()
        self.waiting.append((url, headers, body, d))
        return d

    def answer(self, status: int) -> dict[str, Any]:
        _, _, body, d = self.waiting.pop(0)
        d.callback(status)
        return json.loads(body)

    def fail(self, exc: Exception) -> None:
        self.waiting.pop(0)[3].errback(exc)


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(T0)
    return c


@pytest.fixture
def store() -> MemoryWebhooks:
    return MemoryWebhooks()


@pytest.fixture
def webhooks(store: MemoryWebhooks, clock: Clock) -> Webhooks:
    ids = iter(f"sub{i}" for i in range(1, 100))
    return Webhooks(store, clock, new_id=lambda: next(ids))


def run(coro: Any) -> Any:
    from twisted.internet.defer import ensureDeferred

    return fired(ensureDeferred(coro))


def task_event(kind: str = ev.TASK_CREATED, task: str = "t1", at: float = T0) -> ev.Event:
    return ev.Event(kind, at, task, None, ev.SYSTEM, {"queue": "support"})


# ------------------------------------------------------------------ subscriptions


@pytest.mark.parametrize("url", ["ftp://x.example/hook", "/relative", "http://", "example.com",
                                 "http://exa mple.com/", "http://x.example:99999/", "", None,
                                 "javascript:alert(1)"])
def test_a_url_must_be_absolute_http(url: Any) -> None:
    with pytest.raises(InvalidValue, match="url"):
        check_url(url)


def test_kinds_are_the_domain_s_or_a_family_or_all() -> None:
    assert check_kinds(["task.created", "agent.*", "*", "task.created"]) == (
        "task.created", "agent.*", "*")
    for bad in (["task.nope"], [], "task.created", ["nope.*"], [3]):
        with pytest.raises(InvalidValue, match="kinds"):
            check_kinds(bad)


def test_kinds_match_exactly_by_family_or_all() -> None:
    assert matches(["task.created"], "task.created")
    assert not matches(["task.created"], "task.queued")
    assert matches(["task.*"], "task.queued") and not matches(["task.*"], "offer.accepted")
    assert matches(["*"], "anything.at.all")


def test_subscribe_returns_a_generated_secret_once_and_audits(webhooks: Webhooks,
                                                             store: MemoryWebhooks) -> None:
    sub, secret = run(webhooks.subscribe("https://crm.example/hook", ["task.*"],
                                         "supervisor:sue"))
    assert len(secret) >= 32
    assert (sub.id, sub.url, sub.kinds, sub.created_by, sub.created_at) == (
        "sub1", "https://crm.example/hook", ("task.*",), "supervisor:sue", T0)
    assert run(webhooks.subscriptions()) == [sub]
    assert secret not in repr(sub)
    (_, audit), = store.logs["agent"]
    assert (audit.kind, audit.actor, audit.agent_id) == (ev.CONFIG_CHANGED, "supervisor:sue",
                                                         "supervisor:sue")
    assert audit.data == {"what": "webhook", "action": "added", "subscription": "sub1",
                          "url": "https://crm.example/hook", "kinds": ["task.*"]}
    assert secret not in json.dumps(audit.data)


def test_a_given_secret_is_checked_and_kept_out_of_the_audit(webhooks: Webhooks,
                                                             store: MemoryWebhooks) -> None:
    with pytest.raises(InvalidValue, match="secret"):
        run(webhooks.subscribe("https://crm.example/", ["*"], "operator", secret="short"))
    with pytest.raises(InvalidValue, match="password"):
        run(webhooks.subscribe("https://u:pw@crm.example/h", ["*"], "operator", secret=SECRET))
    _, secret = run(webhooks.subscribe("https://crm.example:8443/h", ["*"], "operator",
                                       secret=SECRET))
    assert secret == SECRET
    (_, audit), = store.logs["agent"]
    assert audit.data["url"] == "https://crm.example:8443/h"
    assert SECRET not in json.dumps(audit.data)


def test_bad_input_stores_nothing(webhooks: Webhooks, store: MemoryWebhooks) -> None:
    with pytest.raises(InvalidValue):
        run(webhooks.subscribe("https://crm.example/", ["task.nope"], "operator"))
    assert run(webhooks.subscriptions()) == [] and store.logs["agent"] == []


def test_unsubscribe_and_unknown_ids(webhooks: Webhooks, store: MemoryWebhooks) -> None:
    sub, _ = run(webhooks.subscribe("https://crm.example/", ["*"], "operator"))
    run(webhooks.unsubscribe(sub.id, "supervisor:sue"))
    assert run(webhooks.subscriptions()) == []
    assert store.logs["agent"][-1][1].data["action"] == "removed"
    for call in (webhooks.unsubscribe(sub.id, "operator"), webhooks.subscription(sub.id),
                 webhooks.deliveries(sub.id)):
        with pytest.raises(UnknownSubscription, match="no such webhook"):
            run(call)


def test_deliveries_arguments_are_checked(webhooks: Webhooks) -> None:
    sub, _ = run(webhooks.subscribe("https://crm.example/", ["*"], "operator"))
    for kwargs in ({"state": "lost"}, {"limit": 0}, {"limit": 10_000}, {"before": -1}):
        with pytest.raises(InvalidValue):
            run(webhooks.deliveries(sub.id, **kwargs))


# ------------------------------------------------------------------ signing


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = body_of({"id": "task-1", "kind": "task.created"})
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature(SECRET, "1700000000", body) == f"v1={expected}"


def test_the_back_off_grows_with_jitter_and_keeps_its_last_step() -> None:
    rng = random.Random(7)
    for n, base in enumerate(BACKOFF, start=1):
        for _ in range(20):
            assert base * (1 - JITTER) <= backoff(n, rng) <= base * (1 + JITTER)
    assert backoff(50, rng) <= BACKOFF[-1] * (1 + JITTER)
    assert len({round(backoff(1, rng), 3) for _ in range(10)}) > 1  # jittered


# ------------------------------------------------------------------ delivery


def deliverer(store: MemoryWebhooks, clock: Clock, receiver: Receiver, **kw: Any) -> Deliverer:
    outcomes: list[str] = []
    d = Deliverer(store, clock, receiver, rng=random.Random(1), on_result=outcomes.append, **kw)
    d.outcomes = outcomes  # type: ignore[attr-defined]
    return d


def test_only_committed_events_after_subscribing_are_delivered_signed(
        webhooks: Webhooks, store: MemoryWebhooks, clock: Clock) -> None:
    store.append(task_event(task="before"))
    sub, secret = run(webhooks.subscribe("https://crm.example/hook", ["task.created"], "op"))
    receiver = Receiver()
    d = deliverer(store, clock, receiver)
    event_id = store.append(task_event(task="t1"))
    store.append(task_event(ev.TASK_QUEUED))  # not subscribed to
    fired(d.tick())
    (url, headers, body, _), = receiver.waiting
    assert url == "https://crm.example/hook"
    assert headers["Switchboard-Event-Id"] == event_id == "task-2"
    assert headers["Switchboard-Timestamp"] == "1700000000"
    assert headers["Switchboard-Signature"] == signature(secret, "1700000000", body)
    assert json.loads(body) == {"id": "task-2", "kind": "task.created", "at": T0, "task": "t1",
                                "agent": None, "actor": "system", "data": {"queue": "support"}}
    receiver.answer(204)
    (done,) = run(webhooks.deliveries(sub.id))
    assert (done.state, done.attempts, done.last_status, done.delivered_at) == (
        "delivered", 1, 204, T0)
    fired(d.tick())
    assert receiver.waiting == []  # once


def test_failures_are_retried_on_schedule_then_dead_and_redeliverable(
        webhooks: Webhooks, store: MemoryWebhooks, clock: Clock) -> None:
    sub, _ = run(webhooks.subscribe("https://crm.example/", ["task.*"], "op"))
    receiver = Receiver()
    d = deliverer(store, clock, receiver, max_attempts=3)
    store.append(task_event())
    fired(d.tick())
    receiver.answer(500)
    (item,) = run(webhooks.deliveries(sub.id))
    assert (item.state, item.attempts, item.last_status, item.last_error) == (
        "pending", 1, 500, "HTTP 500")
    wait = item.next_attempt_at - T0
    assert BACKOFF[0] * (1 - JITTER) <= wait <= BACKOFF[0] * (1 + JITTER)
    clock.advance(wait - 0.5)
    fired(d.tick())
    assert receiver.waiting == []  # not yet due
    clock.advance(1)
    fired(d.tick())
    receiver.fail(ConnectionRefusedError("refused"))
    (item,) = run(webhooks.deliveries(sub.id))
    assert (item.attempts, item.last_status) == (2, None)
    assert "ConnectionRefusedError" in item.last_error
    assert BACKOFF[1] * (1 - JITTER) <= item.next_attempt_at - clock.seconds()
    clock.advance(BACKOFF[1] * 2)
    fired(d.tick())
    receiver.answer(404)
    (item,) = run(webhooks.deliveries(sub.id, state="dead"))
    assert (item.attempts, item.next_attempt_at) == (3, None)
    assert d.outcomes == ["retry", "retry", "dead"]  # type: ignore[attr-defined]
    clock.advance(3600)
    fired(d.tick())
    assert receiver.waiting == []  # dead stays dead

    run(webhooks.redeliver(sub.id, item.id, "supervisor:sue"))
    assert store.logs["agent"][-1][1].data == {"what": "webhook", "action": "redelivered",
                                               "subscription": sub.id, "delivery": item.id}
    fired(d.tick())
    receiver.answer(200)
    (item,) = run(webhooks.deliveries(sub.id))
    assert (item.state, item.attempts) == ("delivered", 1)
    with pytest.raises(UnknownDelivery, match="no such delivery"):
        run(webhooks.redeliver(sub.id, 999, "op"))


def test_concurrency_is_bounded_per_subscription_and_in_all(
        webhooks: Webhooks, store: MemoryWebhooks, clock: Clock) -> None:
    slow, _ = run(webhooks.subscribe("https://slow.example/", ["*"], "op"))
    run(webhooks.subscribe("https://fast.example/", ["*"], "op"))
    receiver = Receiver()
    d = deliverer(store, clock, receiver, per_subscription=2, max_in_flight=3)
    for i in range(5):
        store.append(task_event(task=f"t{i}"))
    fired(d.tick())
    hosts = [url for url, *_ in receiver.waiting]
    assert len(hosts) == 3 and hosts.count("https://slow.example/") <= 2
    fired(d.tick())
    assert len(receiver.waiting) == 3  # nothing more until one is answered


def test_a_stop_leaves_posts_in_flight_pending(webhooks: Webhooks, store: MemoryWebhooks,
                                               clock: Clock) -> None:
    sub, _ = run(webhooks.subscribe("https://crm.example/", ["*"], "op"))
    receiver = Receiver()
    d = deliverer(store, clock, receiver)
    d.start()
    store.append(task_event())
    clock.advance(d.poll)
    assert len(receiver.waiting) == 1
    fired(d.stop())
    (item,) = run(webhooks.deliveries(sub.id))
    assert (item.state, item.attempts) == ("pending", 0)
    again = deliverer(store, clock, receiver)  # the next start sends it
    receiver.waiting.clear()
    fired(again.tick())
    receiver.answer(200)
    assert run(webhooks.deliveries(sub.id))[0].state == "delivered"


def test_a_failing_round_is_logged_and_the_next_one_runs(
        webhooks: Webhooks, store: MemoryWebhooks, clock: Clock) -> None:
    run(webhooks.subscribe("https://crm.example/", ["*"], "op"))
    receiver = Receiver()
    receiver.auto = 200
    d = deliverer(store, clock, receiver)
    calls = {"n": 0}
    real = store.fan_out

    def flaky(*a: Any) -> Deferred[int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database gone")
        return real(*a)

    store.fan_out = flaky  # type: ignore[method-assign]
    d.start()
    store.append(task_event())
    clock.advance(d.poll)
    assert len(receiver.waiting) == 1
    fired(d.stop())


def test_delivered_deliveries_are_forgotten_after_keep_days_hourly(
        webhooks: Webhooks, store: MemoryWebhooks, clock: Clock) -> None:
    sub, _ = run(webhooks.subscribe("https://crm.example/", ["task.*"], "op"))
    receiver = Receiver()
    receiver.auto = 200
    d = deliverer(store, clock, receiver, keep_days=1)
    store.append(task_event())
    fired(d.tick())
    fired(d.tick())  # the answer is recorded
    assert [x.state for x in run(webhooks.deliveries(sub.id))] == ["delivered"]
    clock.advance(86400 + 1)
    fired(d.tick())
    assert run(webhooks.deliveries(sub.id)) == []


def test_a_database_outage_is_logged_once_and_its_end_once(
        store: MemoryWebhooks, clock: Clock, caplog) -> None:
    import logging

    from twisted.internet.defer import fail

    caplog.set_level(logging.INFO, logger="dispatcher.service.webhooks")
    d = deliverer(store, clock, Receiver())
    working = store.fan_out
    store.fan_out = lambda *a, **k: fail(OSError("database unreachable"))  # type: ignore
    for _ in range(5):
        fired(d.tick())  # never fails
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "database unreachable" in said[0]
    store.fan_out = working  # type: ignore
    fired(d.tick())
    fired(d.tick())
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and said[1] == "webhook rounds work again"
