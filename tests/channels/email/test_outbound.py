"""The outbound relay (channels/email/outbound.py) against a real SMTP sink (aiosmtpd): the
acknowledgement of a received message leaves through the outbox with its threading headers and
request number; 4xx is retried with backoff, 5xx is dead-lettered with the error visible."""

from __future__ import annotations

import smtplib
import socket
import time
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from tests.channels.email import running
from tests.support import missing

WAIT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """Answers each DATA with the next scripted reply (then 250) and keeps what it accepted."""

    def __init__(self) -> None:
        self.script: dict[str, list[str]] = {}
        self.accepted: list = []
        self.attempts: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        rcpt = envelope.rcpt_tos[0]
        self.attempts.append(rcpt)
        replies = self.script.get(rcpt, [])
        if replies:
            return replies.pop(0)
        self.accepted.append(envelope)
        return "250 OK"


@pytest.fixture(scope="module")
def sink():
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        missing("aiosmtpd is not installed (pip install aiosmtpd)")
    handler = Sink()
    ctl = Controller(handler, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield handler, ctl.port
    ctl.stop()


@pytest.fixture(scope="module")
def relayed(sink, tmp_path_factory):
    handler, port = sink
    url = f"sqlite:///{tmp_path_factory.mktemp('out') / 'switchboard.db'}"
    s = running.start(url, relay_host="127.0.0.1", relay_port=port, relay_interval=0.1,
                      retry_base=0.3, retry_max=1.0, max_attempts=5,
                      from_address="help@example.com", message_id_domain="example.com")
    yield s, handler
    s.stop()


def send(server, sender: str, subject: str, **headers: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "support@example.com", subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@customer.org>"
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    msg.set_content("hello")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as c:
        c.send_message(msg)


def until(check, seconds: float = WAIT_SECONDS):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_ack_reaches_the_relay_with_threading_headers(relayed) -> None:
    server, sink = relayed
    send(server, "carol@customer.org", "Broken invoice")
    env = until(lambda: [e for e in sink.accepted if e.rcpt_tos == ["carol@customer.org"]])[0]
    msg = message_from_bytes(env.content, policy=policy.default)
    assert env.mail_from == "help@example.com"
    assert msg["In-Reply-To"] == "<Broken-invoice@customer.org>"
    assert msg["References"] == "<Broken-invoice@customer.org>"
    assert msg["Message-ID"].endswith("@example.com>")
    assert msg["Auto-Submitted"] == "auto-replied"
    assert b"\r\r" not in env.content
    assert "[#SB-" in msg["Subject"]
    status = until(lambda: running.rows(server.url, "select s.status from email_messages m "
                                        "join email_statuses s on s.message_id = m.id where "
                                        "m.kind = 'ack' and m.peer = 'carol@customer.org' and "
                                        "s.status = 'sent'"))
    assert status == [("sent",)]  # appended: the message row itself never changes


def test_no_ack_to_automatic_mail_nor_twice_in_the_period(relayed) -> None:
    server, sink = relayed
    send(server, "list@customer.org", "Digest", Precedence="list")
    send(server, "bot@customer.org", "Out of office", Auto_Submitted="auto-replied")
    send(server, "dan@customer.org", "First")
    send(server, "dan@customer.org", "Second")
    until(lambda: [e for e in sink.accepted if e.rcpt_tos == ["dan@customer.org"]])
    time.sleep(0.5)
    assert [e.rcpt_tos for e in sink.accepted].count(["dan@customer.org"]) == 1
    assert not [e for e in sink.accepted if e.rcpt_tos[0].startswith(("list@", "bot@"))]


def test_4xx_is_retried_with_backoff(relayed) -> None:
    server, sink = relayed
    sink.script["erin@customer.org"] = ["451 4.3.0 try later", "421 4.4.2 busy"]
    send(server, "erin@customer.org", "Retry me")
    until(lambda: [e for e in sink.accepted if e.rcpt_tos == ["erin@customer.org"]])
    assert sink.attempts.count("erin@customer.org") == 3
    [(task_id,)] = running.rows(server.url, "select task_id from email_messages where "
                                "peer = 'erin@customer.org' and kind = 'ack'")
    kinds = until(lambda: [k for (k,) in running.rows(
        server.url, "select kind from task_events where task_id = :t order by id", t=task_id)
        if k.startswith("email.")] if "email.sent" in {k for (k,) in running.rows(
            server.url, "select kind from task_events where task_id = :t", t=task_id)} else None)
    assert kinds.count("email.retry") == 2 and kinds[-1] == "email.sent"


def test_5xx_is_dead_lettered_with_a_visible_error(relayed) -> None:
    server, sink = relayed
    sink.script["frank@customer.org"] = ["550 5.1.1 no such user"]
    send(server, "frank@customer.org", "Dead letter")
    row = until(lambda: running.rows(server.url, "select s.status, s.error from email_messages "
                                     "m join email_statuses s on s.message_id = m.id where "
                                     "m.peer = 'frank@customer.org' and m.kind = 'ack' and "
                                     "s.status = 'dead'"))
    assert "no such user" in row[0][1]
    assert sink.attempts.count("frank@customer.org") == 1
