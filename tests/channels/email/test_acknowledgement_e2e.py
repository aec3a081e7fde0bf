"""Acknowledgements end to end, over SMTP. A sender whose mail could not be stored is
acknowledged when their client retries: the e-mail test server (server.py: the edge and the services as `serve` builds them) on
SQLite; a trigger makes every insert of a task fail (as a full disk would fail the commit),
so the mail's transaction fails once it is made, and the SMTP client gets a 451; the trigger
goes, the client sends the mail again, gets its 250, and the acknowledgement is stored for
sending (before the fix the first try's acknowledgement, never sent, counted for the period
and the retry got none). A sender acknowledged before the server restarted is not acknowledged
again within the period: the storing transaction reads the last acknowledgement (the restarted
process remembers none of its own)."""

from __future__ import annotations

import json
import smtplib
import sqlite3

from tests.channels.email import running

SENDER = "alice@customer.example"
MAIL = (f"From: Alice <{SENDER}>\r\nTo: support@example.com\r\nSubject: Where is my parcel?\r\n"
        "Message-ID: <retry-1@customer.example>\r\n\r\nIt did not come.\r\n").encode()


def send(port: int, mail: bytes = MAIL) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("client.example")
        s.mail(SENDER)
        s.rcpt("support@example.com")
        return s.data(mail)


def test_a_retried_mail_whose_first_try_failed_is_acknowledged(tmp_path) -> None:
    path = tmp_path / "mail.db"
    url = f"sqlite:///{path}"
    server = running.start(url, ack_queues="support")
    try:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("CREATE TRIGGER no_task BEFORE INSERT ON tasks "
                   "BEGIN SELECT RAISE(ABORT, 'the disk is full'); END")
        try:
            code, text = send(server.port)
        finally:
            db.execute("DROP TRIGGER no_task")
            db.close()
        assert code == 451, (code, text)
        assert running.rows(url, "select id from email_messages") == []  # nothing stored

        code, text = send(server.port)  # the client's retry

        assert code == 250, (code, text)
        stored = running.rows(url, "select direction, kind, peer from email_messages "
                                   "order by created_at, direction")
        assert [(d, k) for d, k, _ in stored] == [("in", "customer"), ("out", "ack")]
        assert stored[1][2] == SENDER
        assert running.rows(url, "select kind from outbox") == [("email",)]
    finally:
        server.stop()


def test_a_sender_acknowledged_before_a_restart_is_not_acknowledged_again(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'mail.db'}"
    server = running.start(url, ack_queues="support")
    try:
        assert send(server.port)[0] == 250
    finally:
        server.stop()
    server = running.start(url, ack_queues="support")  # remembers no acknowledgement of its own
    try:
        other = MAIL.replace(b"retry-1@", b"other-2@").replace(b"my parcel", b"my refund")
        assert send(server.port, other)[0] == 250
    finally:
        server.stop()
    stored = running.rows(url, "select kind, peer from email_messages order by created_at")
    assert stored == [("customer", SENDER), ("ack", SENDER), ("customer", SENDER)]
    tasks = running.rows(url, "select task_id from email_messages where kind = 'customer' "
                              "order by created_at")
    assert len({t for (t,) in tasks}) == 2  # a new request each, not a reply
    skipped = running.rows(url, "select task_id, data from task_events "
                                "where kind = 'email.ack_skipped'")
    assert [(t, json.loads(d) if isinstance(d, str) else d) for t, d in skipped] == [
        (tasks[1][0], {"reason": "already acknowledged within the period"})]
