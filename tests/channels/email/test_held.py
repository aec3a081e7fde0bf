"""Held mail on the e-mail edge (channels/email/held.py).

- `HoldingSmtp`, the SMTP of a node that does not route, on a real port (a subprocess, as
  running.py starts the e-mail test server) over SQLite: smtplib's message is answered
  "250 2.0.0 Stored; held for the dispatcher" and its row holds the exact bytes (with the
  Received field the edge adds), the queue of the recipient routes, the envelope and the sender
  checks' verdict; unknown recipients 550; a store that fails answers 451 (in process).
- `TakeIn`, the router's side, over a real Mail on a SqlStore (SQLite, the service stack of
  tests/dispatcher/runtime/running.py): held mail becomes exactly what the same messages
  delivered by SMTP become, one after another, oldest first, with the source `held:<id>`;
  a message already stored is only forgotten; one that fails waits and is retried.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from twisted.internet.defer import ensureDeferred, fail
from twisted.internet.testing import StringTransport

from channels.email.authenticity import Verdict
from channels.email.config import EmailSettings, Routes
from channels.email.held import HoldingSmtp, TakeIn
from channels.email.reading import Inline
from channels.email.smtp import SmtpIntake
from dispatcher.domain.queues import Queue
from dispatcher.service.held import RETRY_SECONDS, Held, source_of
from dispatcher.service.mail import Mail
from dispatcher.storage import schema
from dispatcher.storage.held import SqlHeldMail
from tests.channels.email import running
from tests.dispatcher.runtime.running import sql_stack
from tests.dispatcher.service.stacks import Stack
from tests.dispatcher.storage.wiring import Wiring

ROUTES = running.ROUTES  # support@ -> support, sales@ -> sales
RELAY_RESULTS = "Authentication-Results: mx.test; dmarc=pass header.from=customer.org\r\n"

# ---------------------------------------------------------------- HoldingSmtp on a real port


def serve_holding(url: str, settings_json: str) -> None:
    """The SMTP of a node that does not route, in a process of its own (`holding` starts it):
    `StandbyEmailEdge` over `SqlHeldMail` on `url`; prints `READY <port>`, runs until SIGTERM."""
    from twisted.internet import reactor

    from channels.email.held import build_standby
    from dispatcher.service.edges import StandbyContext
    from dispatcher.service.nodes import Nodes
    from dispatcher.storage.engine import make_engine
    from dispatcher.storage.nodes import SqlNodes
    from dispatcher.storage.pool import Pool

    schema.upgrade(url)
    pool = Pool(make_engine(url), reactor)
    nodes = Nodes(SqlNodes(pool), reactor, "edge-1", "127.0.0.1")
    edge = build_standby(StandbyContext(reactor, Held(SqlHeldMail(pool), reactor, "edge-1"),
                                        nodes), EmailSettings(**json.loads(settings_json)))

    def start() -> None:
        pool.start()
        edge.start()
        print("READY", edge.port.getHost().port, flush=True)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", edge.stop)
    reactor.run()


@pytest.fixture(scope="module")
def holding(tmp_path_factory) -> Iterator[running.Server]:
    url = f"sqlite:///{tmp_path_factory.mktemp('held') / 'switchboard.db'}"
    settings = dict(smtp_port=0, recipients=ROUTES, domains="example.com",
                    default_queue="support", hostname="mx.example.com", auth_mode="relay",
                    auth_serv_id="mx.test", auth_trusted_relays="127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tests.channels.email.test_held import "
         "serve_holding; serve_holding(sys.argv[1], sys.argv[2])", url, json.dumps(settings)],
        cwd=running.ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(running.ROOT)})
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        raise RuntimeError(f"the holding SMTP did not start (rc {proc.wait()})")
    server = running.Server(proc, int(line.split()[1]), url)
    yield server
    assert server.stop() == 0


def held_rows(url: str, **where: str) -> list[Any]:
    return running.rows(url, "SELECT * FROM held_mail" + (
        " WHERE " + " AND ".join(f"{k} = :{k}" for k in where) if where else ""), **where)


RECEIVED = re.compile(rb"\AReceived: from c\.org \(\[127\.0\.0\.1\]\)\r\n\tby mx\.example\.com "
                      rb"with ESMTP \(switchboard\); [^\r\n]+\r\n")


def test_smtp_on_a_node_that_does_not_route_holds_the_exact_message(holding) -> None:
    body = (RELAY_RESULTS.encode() + b"From: Alice <alice@customer.org>\r\n"
            b"To: sales@example.com\r\nSubject: held-exact caf\xc3\xa9\r\n"
            b"Message-ID: <held-exact@customer.org>\r\n\r\n"
            b"8-bit: \xe9\xff\r\n..a dot-stuffed line\r\nend\r\n")
    with smtplib.SMTP("127.0.0.1", holding.port, timeout=30) as c:
        c.ehlo("c.org")
        c.mail("alice@customer.org")
        assert c.rcpt("sales@example.com")[0] == 250
        assert c.rcpt("support@example.com")[0] == 250
        assert c.data(body) == (250, b"2.0.0 Stored; held for the dispatcher")
    [row] = [r for r in held_rows(holding.url) if b"held-exact" in r.raw]
    raw = bytes(row.raw)
    head = RECEIVED.match(raw)
    assert head, raw[:200]
    # smtplib dot-stuffs "..a" into "...a"; the server takes one dot off again
    assert raw[head.end():] == body
    assert row.queue == "sales"  # the first recipient's route
    assert json.loads(row.recipients) == ["sales@example.com", "support@example.com"]
    assert row.envelope_from == "alice@customer.org" and row.node == "edge-1"
    assert json.loads(row.verdict) == {"authenticated": True, "domain": "customer.org",
                                       "summary": json.loads(row.verdict)["summary"]}
    assert "dmarc=pass" in json.loads(row.verdict)["summary"]
    assert (row.attempts, row.error) == (0, None)
    assert row.next_attempt_at == row.received_at > 0


def test_unknown_recipients_get_550_and_nothing_is_held(holding) -> None:
    before = len(held_rows(holding.url))
    with smtplib.SMTP("127.0.0.1", holding.port, timeout=30) as c:
        c.ehlo("c.org")
        c.mail("a@c.org")
        assert c.rcpt("someone@elsewhere.org")[0] == 550
        assert c.rcpt("anything@example.com")[0] == 250  # our domain: the default queue
        c.data(b"Subject: to the default queue\r\n\r\nx\r\n")
    [row] = [r for r in held_rows(holding.url) if b"to the default queue" in r.raw]
    assert row.queue == "support" and json.loads(row.recipients) == ["anything@example.com"]
    assert row.envelope_from == "a@c.org"
    assert len(held_rows(holding.url)) == before + 1


def test_the_null_sender_is_held_as_such(holding) -> None:
    with smtplib.SMTP("127.0.0.1", holding.port, timeout=30) as c:
        c.sendmail("<>", ["support@example.com"], b"Subject: bounce-held\r\n\r\nx\r\n")
    [row] = [r for r in held_rows(holding.url) if b"bounce-held" in r.raw]
    assert row.envelope_from == ""


class FailingStore:
    def hold(self, mail):
        return fail(RuntimeError("database is locked"))


class _Clock:
    def seconds(self) -> float:
        return 0.0


def test_a_store_that_fails_answers_451_so_the_sender_retries() -> None:
    s = EmailSettings(recipients=ROUTES)
    intake = HoldingSmtp(Held(FailingStore(), _Clock()), s, Routes.from_settings(s))
    proto = intake.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"HELO c.org\r\nMAIL FROM:<a@c.org>\r\nRCPT TO:<support@example.com>"
                       b"\r\nDATA\r\n")
    transport.clear()
    proto.dataReceived(b"Subject: x\r\n\r\nhi\r\n.\r\n")
    assert transport.value().startswith(b"451 4.3.0 ")


# ---------------------------------------------------------------- TakeIn on the router


@dataclass
class Router:
    """The router's service stack on a SqlStore: Mail, its SMTP intake, held mail, TakeIn."""

    url: str
    w: Wiring
    stack: Stack
    intake: SmtpIntake
    held: Held
    take_in: TakeIn

    def hold(self, raw: bytes, queue: str = "support", verdict: Verdict | None = None,
             sender: str = "alice@customer.org") -> str:
        mail = self.w.wait(self.held.hold(raw, queue, sender, ("support@example.com",),
                                          None if verdict is None else asdict(verdict)))
        return mail.id

    def direct(self, raw: bytes, queue: str = "support", verdict: Verdict | None = None,
               sender: str = "alice@customer.org", source: str | None = None) -> Any:
        got = self.w.wait(self.intake.deliver(raw, queue, sender, ("support@example.com",),
                                              verdict=verdict, source=source))
        self.stack.settle()
        return got

    def round(self) -> int:
        n = self.w.wait(ensureDeferred(self.take_in._round()))
        self.stack.settle()
        return n

    def rows(self, query: str, **params: Any) -> list[Any]:
        return running.rows(self.url, query, **params)


def router_at(url: str) -> Router:
    schema.upgrade(url)
    w, stack = sql_stack(url)
    for name in ("support", "sales"):
        stack.put_queue(Queue(name, deadline_rule="sliding 8h"))
    mail = Mail(stack.assignment, stack.store, stack.clock, stack.intake)
    s = EmailSettings(recipients=ROUTES)
    intake = SmtpIntake(mail, s, Routes.from_settings(s))
    intake.reader = Inline()
    held = Held(SqlHeldMail(w.pool), stack.clock, "node-a")
    return Router(url, w, stack, intake, held, TakeIn(stack.clock, held, intake, mail))


@pytest.fixture
def router(tmp_path) -> Iterator[Router]:
    r = router_at(f"sqlite:///{tmp_path / 'router.db'}")
    yield r
    r.w.close()


def message(subject: str, mid: str, sender: str = "alice@customer.org",
            in_reply_to: str = "") -> bytes:
    return (f"{RELAY_RESULTS}From: {sender}\r\nTo: support@example.com\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{mid}@customer.org>\r\n"
            + (f"In-Reply-To: <{in_reply_to}@customer.org>\r\n" if in_reply_to else "")
            + f"\r\nAbout {mid}: caf\u00e9.\r\n").encode()


AUTHENTIC = Verdict(True, "customer.org", "dmarc=pass header.from=customer.org")


def conversation() -> list[tuple[bytes, Verdict | None]]:
    """A question, another customer's question, then the first customer's reply naming the
    request number (authenticated: it joins), then an unauthenticated one (a task of its own,
    linked)."""
    return [(message("Printer broken", "q1"), None),
            (message("Invoice", "q2", "bob@other.org"), None),
            (message("Re: [#SB-000001] Printer broken", "r1", in_reply_to="q1"), AUTHENTIC),
            (message("Re: [#SB-000001] Printer broken", "r2", in_reply_to="q1"), None)]


def picture(r: Router) -> dict[str, Any]:
    """What the store holds of the mail, ids replaced by their order of appearance."""
    names: dict[Any, str] = {}

    def n(value: Any) -> Any:
        return None if value is None else names.setdefault(value, f"#{len(names)}")

    tasks = [(n(t.id), t.queue, t.state, n(t.customer_id), t.priority, t.deadline,
              json.loads(t.attributes)) for t in r.rows("SELECT * FROM tasks ORDER BY rowid")]
    for *_, attributes in tasks:
        if "linked_to" in attributes:
            attributes["linked_to"] = n(attributes["linked_to"])
    messages = []
    for row in r.rows("SELECT * FROM email_messages ORDER BY rowid"):
        m = dict(row._mapping)
        m.pop("source")  # held:<id> or none: the one difference (asserted by the test)
        m["id"], m["task_id"] = n(m["id"]), n(m["task_id"])
        if m["direction"] == "out":  # ours: a random Message-ID, in the raw message too
            m["message_id"], m["raw"] = n(m["message_id"]), None
        messages.append(m)
    events = []
    for e in r.rows("SELECT * FROM task_events WHERE kind LIKE 'email.%' "
                    "OR kind = 'task.created' ORDER BY id"):
        data = json.loads(e.data)
        data.pop("source", None)
        for key in ("message", "message_id"):  # ours are random: named in order
            if key == "message" or str(data.get(key, "")).startswith("sb."):
                data[key] = n(data.get(key))
        events.append((n(e.task_id), e.kind, data))
    return {"tasks": tasks, "messages": messages, "events": events}


def test_held_mail_becomes_what_the_same_mail_by_smtp_becomes(tmp_path) -> None:
    by_smtp, by_held = (router_at(f"sqlite:///{tmp_path / name}.db") for name in ("a", "b"))
    try:
        for raw, verdict in conversation():
            by_smtp.direct(raw, verdict=verdict)
        ids = [by_held.hold(raw, verdict=verdict) for raw, verdict in conversation()]
        assert by_held.round() == 4  # one round, oldest first, one after another

        direct, held = picture(by_smtp), picture(by_held)
        assert held == direct
        q1, q2, r2 = (t[0] for t in held["tasks"])
        # in order; r1 joined q1's task, r2 (not vouched for) is a task linked to it
        assert [m["task_id"] for m in held["messages"] if m["direction"] == "in"] == [
            q1, q2, q1, r2]
        assert held["tasks"][0][-1]["request"] == "SB-000001"
        assert held["tasks"][2][-1]["linked_to"] == q1
        sources = by_held.rows("SELECT source FROM email_messages WHERE direction = 'in' "
                               "ORDER BY rowid")
        assert [s for (s,) in sources] == [source_of(i) for i in ids]
        assert by_smtp.rows("SELECT source FROM email_messages WHERE direction = 'in' "
                            "AND source IS NOT NULL") == []
        assert by_held.rows("SELECT id FROM held_mail") == []
        assert by_held.take_in.taken == 4
        # the router's memory too: the open tasks are routed
        assert sorted(by_held.stack.router.tasks) == sorted(
            t for (t,) in by_held.rows("SELECT id FROM tasks"))
    finally:
        by_smtp.w.close()
        by_held.w.close()


def test_a_message_already_stored_is_only_forgotten(router) -> None:
    first = router.hold(message("Printer broken", "q1"))
    # A router stored it, then died before forgetting it.
    router.direct(message("Printer broken", "q1"), source=source_of(first))
    second = router.hold(message("Other", "q2"))
    assert router.round() == 2
    assert router.rows("SELECT id FROM held_mail") == []
    assert router.take_in.taken == 2
    rows = router.rows("SELECT source FROM email_messages WHERE direction = 'in' ORDER BY rowid")
    assert [s for (s,) in rows] == [source_of(first), source_of(second)]
    assert len(router.rows("SELECT id FROM tasks")) == 2  # no second task of q1


def test_the_store_refuses_a_source_twice(router) -> None:
    router.direct(message("Printer broken", "q1"), source="held:x")
    with pytest.raises(sa.exc.IntegrityError):
        router.direct(message("Printer broken again", "q9"), source="held:x")
    assert len(router.rows("SELECT id FROM email_messages WHERE source = 'held:x'")) == 1


def test_a_message_that_fails_waits_and_is_retried_the_others_go_on(router) -> None:
    clock = router.stack.clock
    t0 = clock.seconds()
    bad = router.hold(message("For a queue not made yet", "bad"), queue="later")
    good = router.hold(message("Fine", "good"))
    assert router.round() == 2
    [row] = router.rows("SELECT * FROM held_mail")
    assert row.id == bad and row.attempts == 1 and "later" in row.error
    assert row.next_attempt_at == t0 + RETRY_SECONDS[0]
    rows = router.rows("SELECT source FROM email_messages WHERE direction = 'in'")
    assert [s for (s,) in rows] == [source_of(good)]
    assert router.take_in.taken == 1

    clock.advance(RETRY_SECONDS[0] - 0.5)  # not yet due: not tried
    assert router.round() == 0
    assert router.rows("SELECT attempts FROM held_mail") == [(1,)]
    clock.advance(0.5)  # due: tried again, waits longer
    assert router.round() == 1
    [row] = router.rows("SELECT * FROM held_mail")
    assert (row.attempts, row.next_attempt_at) == (2, t0 + RETRY_SECONDS[0] + RETRY_SECONDS[1])

    router.stack.put_queue(Queue("later"))
    clock.advance(RETRY_SECONDS[1])
    assert router.round() == 1
    assert router.rows("SELECT id FROM held_mail") == []
    [(queue,)] = router.rows("SELECT t.queue FROM tasks t JOIN email_messages m ON "
                             "m.task_id = t.id WHERE m.source = :s", s=source_of(bad))
    assert queue == "later"


def test_the_loop_takes_everything_in_full_batches_at_once(router) -> None:
    router.take_in.batch = 2
    ids = [router.hold(message(f"Question {n}", f"q{n}", f"c{n}@customer.org"))
           for n in range(5)]
    router.take_in.start()  # the first rounds run now, back to back while batches are full
    try:
        for _ in range(200):
            if router.take_in.taken == 5:
                break
            router.w.wait(router.held.backlog())[0]
        router.stack.settle()
        assert router.take_in.taken == 5
        assert router.w.wait(router.held.backlog())[0] == 0
        rows = router.rows("SELECT source FROM email_messages WHERE direction = 'in' "
                           "ORDER BY rowid")
        assert [s for (s,) in rows] == [source_of(i) for i in ids]
        late = router.hold(message("Late", "late", "late@customer.org"))
        router.stack.clock.advance(router.take_in.poll)  # the next poll
        for _ in range(200):
            if router.take_in.taken == 6:
                break
            router.w.wait(router.held.backlog())[0]
        assert router.take_in.taken == 6
        assert router.rows("SELECT source FROM email_messages WHERE direction = 'in' "
                           "ORDER BY rowid")[-1] == (source_of(late),)
    finally:
        router.take_in.stop()


# --------------------------------------------------------------------- senders side by side


class _Deliveries:
    """An SmtpIntake stand-in whose deliveries the test settles by hand."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.pending: dict[str, Any] = {}

    def deliver(self, raw, queue, envelope_from, recipients, verdict=None, source=None):
        from twisted.internet.defer import Deferred

        name = raw.decode()
        self.started.append(name)
        self.pending[name] = Deferred()
        return self.pending[name]


def test_each_senders_mail_is_taken_in_order_and_other_senders_side_by_side() -> None:
    from types import SimpleNamespace

    from twisted.internet.defer import succeed
    from twisted.internet.task import Clock

    from dispatcher.service.ports import HeldMail

    rows = [HeldMail(name, float(i), "edge", "support", sender, ("help@example.com",),
                     name.encode(), None)
            for i, (name, sender) in enumerate([("a1", "A@x.test"), ("b1", "b@y.test"),
                                                ("a2", "a@x.test")])]
    forgotten: list[list[str]] = []
    store = SimpleNamespace(waiting=lambda now, limit: succeed(rows),
                            taken=lambda ids: succeed(forgotten.append(list(ids))))
    deliveries = _Deliveries()
    mail = SimpleNamespace(store=SimpleNamespace(known_mail_sources=lambda s: succeed(set())))
    take_in = TakeIn(Clock(), Held(store, Clock()), deliveries, mail)
    d = ensureDeferred(take_in._round())
    assert deliveries.started == ["a1", "b1"]  # a2 waits for a1 (same sender, any case)
    deliveries.pending["b1"].callback(None)
    assert deliveries.started == ["a1", "b1"]
    deliveries.pending["a1"].callback(None)
    assert deliveries.started == ["a1", "b1", "a2"]
    assert not d.called
    deliveries.pending["a2"].callback(None)
    assert d.called and sorted(forgotten[0]) == ["a1", "a2", "b1"]
