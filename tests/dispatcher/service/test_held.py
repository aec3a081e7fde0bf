"""Held mail, the service (dispatcher/service/held.py) over a fake `HeldStore` and a virtual
clock: what `hold` records and when it fires, the retry schedule of `retry_later`, and what
`waiting`, `taken` and `backlog` pass to the store."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from dispatcher.service.held import RETRY_SECONDS, Held, source_of
from dispatcher.service.ports import HeldMail
from tests.dispatcher.service.stacks import T0, result


class FakeStore:
    """Records every call; `hold` answers with a Deferred the test fires."""

    def __init__(self) -> None:
        self.held: list[HeldMail] = []
        self.pending: list[Deferred] = []
        self.calls: list[tuple[str, Any]] = []

    def hold(self, mail: HeldMail) -> Deferred[None]:
        self.held.append(mail)
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        return d

    def waiting(self, now: float, limit: int) -> Deferred[list[HeldMail]]:
        self.calls.append(("waiting", (now, limit)))
        return succeed(list(self.held))

    def taken(self, ids) -> Deferred[None]:
        self.calls.append(("taken", ids))
        return succeed(None)

    def retry_later(self, id: str, attempts: int, next_attempt_at: float,
                    error: str) -> Deferred[None]:
        self.calls.append(("retry_later", (id, attempts, next_attempt_at, error)))
        return succeed(None)

    def oldest(self) -> Deferred[tuple[int, float | None]]:
        return succeed((len(self.held), min((m.received_at for m in self.held), default=None)))


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(T0)
    return c


def held_mail(attempts: int = 0) -> HeldMail:
    return HeldMail("h1", T0, "node-b", "support", "a@c.org", ("support@example.com",),
                    b"raw", None, attempts, T0)


def test_hold_records_node_time_and_verdict_and_fires_only_after_the_store() -> None:
    store, clock = FakeStore(), Clock()
    clock.advance(T0 + 12.5)
    held = Held(store, clock, node="node-b")
    verdict = {"authenticated": True, "summary": "dkim=pass"}
    d = held.hold(b"Subject: x\r\n\r\nhi\r\n", "support", "a@c.org",
                  ["support@example.com", "sales@example.com"], verdict)
    verdict["authenticated"] = False  # the caller's dict changing later changes nothing

    fired: list[HeldMail] = []
    d.addCallback(fired.append)
    [mail] = store.held
    assert not fired  # the edge must not answer 250 before the commit
    store.pending[0].callback(None)
    assert fired == [mail]
    assert (mail.node, mail.received_at, mail.next_attempt_at) == ("node-b", T0 + 12.5,
                                                                   T0 + 12.5)
    assert mail.queue == "support" and mail.envelope_from == "a@c.org"
    assert mail.recipients == ("support@example.com", "sales@example.com")
    assert mail.raw == b"Subject: x\r\n\r\nhi\r\n"
    assert mail.verdict == {"authenticated": True, "summary": "dkim=pass"}
    assert (mail.attempts, mail.error) == (0, None)
    assert len(mail.id) == 32 and source_of(mail.id) == f"held:{mail.id}"


def test_hold_without_verdict_and_each_message_its_own_id(clock) -> None:
    store = FakeStore()
    held = Held(store, clock)
    held.hold(b"a", "support", "", (), None)
    held.hold(b"a", "support", "", (), None)
    assert [m.verdict for m in store.held] == [None, None]
    assert store.held[0].id != store.held[1].id


def test_a_failed_store_fails_hold(clock) -> None:
    store = FakeStore()
    d = Held(store, clock).hold(b"a", "support", "", (), None)
    store.pending[0].errback(RuntimeError("database is locked"))
    failures: list = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(RuntimeError)


@pytest.mark.parametrize("attempts", range(len(RETRY_SECONDS) + 3))
def test_retry_later_waits_retry_seconds_of_the_attempt_the_last_repeating(clock,
                                                                           attempts) -> None:
    store = FakeStore()
    clock.advance(100)
    result(Held(store, clock).retry_later(held_mail(attempts), "unknown queue"))
    delay = RETRY_SECONDS[min(attempts, len(RETRY_SECONDS) - 1)]
    assert store.calls == [("retry_later", ("h1", attempts + 1, T0 + 100 + delay,
                                            "unknown queue"))]


def test_retry_later_keeps_500_characters_of_the_error(clock) -> None:
    store = FakeStore()
    result(Held(store, clock).retry_later(held_mail(), "é" * 499 + "xyz"))
    [(_, (_, _, _, error))] = store.calls
    assert error == "é" * 499 + "x"


def test_waiting_asks_for_what_is_due_now_and_taken_count_pass_through(clock) -> None:
    store = FakeStore()
    held = Held(store, clock)
    held.hold(b"a", "support", "", (), None)
    clock.advance(7)
    assert result(held.waiting(50)) == store.held
    result(held.taken(iter(["h1", "h2"])))
    assert store.calls == [("waiting", (T0 + 7, 50)), ("taken", ["h1", "h2"])]
    assert result(held.backlog())[0] == 1
