"""The e-mail test server (server.py) commits as the runtime does: bench/smtp.py measures it as
what `serve` runs (runtime/app.py: 2 batches in flight on PostgreSQL, 1 on SQLite; behind the
router's lease with `--fenced`)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from dispatcher.storage.commit import BESIDE_CALLS
from tests.channels.email import running
from tests.channels.email.server import group_commit
from tests.dispatcher.storage.test_commit import FakePool, keyed
from tests.dispatcher.storage.turns import TurnReactor

READY_SECONDS = 20.0


def batches_in_flight(url: str) -> int:
    """Batches on other rows in flight at once with the server's group commit on `url`: a
    large one (as many calls as a batch needs to have another start beside it), then two
    calls, each in a turn of its own."""
    reactor, pool = TurnReactor(), FakePool()
    engine = sa.create_engine(url)  # never connects: only its dialect is read
    gc = group_commit(pool, reactor, engine)
    _, record = keyed()
    for n in range(BESIDE_CALLS):
        gc.run(record, (f"a{n}", 1))
    reactor.turn()
    for key in ("b", "c"):
        gc.run(record, (key, 1))
        reactor.turn()
    return pool.in_flight


def test_on_postgresql_two_batches_are_in_flight_as_in_the_runtime() -> None:
    assert batches_in_flight("postgresql+psycopg2://nobody@127.0.0.1:1/none") == 2


def test_on_sqlite_one_batch_is_in_flight() -> None:
    assert batches_in_flight("sqlite://") == 1


@pytest.mark.postgres
def test_fenced_on_postgresql_it_holds_the_lease_and_commits_behind_its_fence(
        pg_url: str) -> None:
    """`--fenced` (bench/smtp.py's default on PostgreSQL): the server claims the router's lease
    before it listens and acknowledges mail it stored behind the fence; once another node took
    the lease over, its commits are refused and it stops, the refused mail never acknowledged."""
    server = running.start(pg_url, fenced=True)
    try:
        assert send(server.port, "first") == 250
        [(holder, epoch)] = running.rows(pg_url, "SELECT holder, epoch FROM router_leases")
        assert holder == f"email-server-{server.proc.pid}" and epoch == 1
        engine = sa.create_engine(pg_url)
        with engine.begin() as conn:  # another node claimed the lease
            conn.execute(sa.text("UPDATE router_leases SET epoch = 2, holder = 'other'"))
        engine.dispose()
        try:
            refused = send(server.port, "second")
        except (smtplib.SMTPException, OSError):  # it stopped before its reply
            refused = None
        assert refused in (451, None)  # not acknowledged: the client keeps it
        assert server.proc.wait(READY_SECONDS) is not None  # deposed: it stopped
    finally:
        server.stop()
    subjects = [subject for (subject,) in running.rows(
        pg_url, "SELECT subject FROM email_messages WHERE direction = 'in'")]
    assert subjects == ["first"]


def send(port: int, subject: str) -> int:
    """One message over SMTP; the reply code to its data."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "customer@example.org", "support@example.com", subject)
    message.set_content("Where is my parcel?")
    with smtplib.SMTP("127.0.0.1", port, timeout=READY_SECONDS) as client:
        client.ehlo("client.example.org")
        client.mail("customer@example.org")
        client.rcpt("support@example.com")
        code, _ = client.data(message.as_bytes())
        return code
