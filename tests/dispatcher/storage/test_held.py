"""Held mail on the database (dispatcher/storage/held.py, table `held_mail`), on SQLite and
PostgreSQL: what is held comes back byte for byte, oldest first, only when due, `limit` at a
time; `taken` forgets, `retry_later` hides a message until its next attempt."""

from __future__ import annotations

import pytest

from dispatcher.service.ports import HeldMail
from dispatcher.storage.held import SqlHeldMail
from tests.dispatcher.storage.wiring import Wiring

T = 1_772_532_000.0
# Not UTF-8 (a lone 0xff, a Latin-1 e-acute), a NUL, a CR alone, and every byte once.
RAW = (b"Received: from c.org ([127.0.0.1])\r\n\tby mx; x\r\nSubject: caf\xe9\r\n\r\n"
       b"\xff\x00\r\x80 end\r\n" + bytes(range(256)))


def mail(id: str, at: float, **kw) -> HeldMail:
    fields = dict(id=id, received_at=at, node="node-b", queue="support",
                  envelope_from="alice@customer.org", recipients=("support@example.com",),
                  raw=RAW, verdict=None, attempts=0, next_attempt_at=at)
    fields.update(kw)
    return HeldMail(**fields)


@pytest.fixture
def held(wiring: Wiring) -> SqlHeldMail:
    return SqlHeldMail(wiring.pool)


def test_what_is_held_comes_back_intact(wiring, held) -> None:
    verdict = {"authenticated": True, "summary": "dkim=pass header.d=c.org",
               "spf": "pass", "score": 1.5, "notes": ["a", None]}
    m = mail("h1", T, recipients=("support@example.com", "Sales@Example.com"), verdict=verdict,
             node="edge-1", envelope_from="")
    wiring.wait(held.hold(m))
    [back] = wiring.wait(held.waiting(T, 10))
    assert back == m
    assert type(back.raw) is bytes and back.raw == RAW
    assert type(back.recipients) is tuple


def test_waiting_is_oldest_first_only_due_and_limited(wiring, held) -> None:
    for id, at in [("c", T + 2), ("a", T), ("late", T + 100), ("b", T + 1)]:
        wiring.wait(held.hold(mail(id, at)))
    assert [m.id for m in wiring.wait(held.waiting(T + 10, 10))] == ["a", "b", "c"]
    assert [m.id for m in wiring.wait(held.waiting(T + 10, 2))] == ["a", "b"]
    assert [m.id for m in wiring.wait(held.waiting(T + 100, 10))] == ["a", "b", "c", "late"]
    assert wiring.wait(held.waiting(T - 1, 10)) == []
    assert wiring.wait(held.oldest())[0] == 4


def test_taken_forgets_only_those(wiring, held) -> None:
    for id in ("a", "b", "c"):
        wiring.wait(held.hold(mail(id, T)))
    wiring.wait(held.taken(["a", "c"]))
    wiring.wait(held.taken([]))  # nothing: harmless
    assert [m.id for m in wiring.wait(held.waiting(T, 10))] == ["b"]
    assert wiring.wait(held.oldest())[0] == 1


def test_retry_later_hides_it_until_due_with_its_error(wiring, held) -> None:
    wiring.wait(held.hold(mail("a", T)))
    wiring.wait(held.hold(mail("b", T + 1)))
    wiring.wait(held.retry_later("a", 1, T + 30, "UnknownQueue: nope"))
    assert [m.id for m in wiring.wait(held.waiting(T + 29, 10))] == ["b"]
    due = wiring.wait(held.waiting(T + 30, 10))
    assert [m.id for m in due] == ["b", "a"]  # the retried one after what was due before it
    assert (due[1].attempts, due[1].next_attempt_at, due[1].error) == (1, T + 30,
                                                                      "UnknownQueue: nope")
    assert (due[1].received_at, due[1].raw) == (T, RAW)
    assert wiring.wait(held.oldest())[0] == 2
