"""A sender whose mail could not be stored is acknowledged when their client retries, end to
end: the e-mail test server (server.py: the edge and the services as `serve` builds them) on
SQLite; a trigger makes every insert of a task fail (as a full disk would fail the commit),
so the mail's transaction fails once it is made, and the SMTP client gets a 451; the trigger
goes, the client sends the mail again, gets its 250, and the acknowledgement is stored for
sending (before the fix the first try's acknowledgement, never sent, counted for the period
and the retry got none)."""

from __future__ import annotations

import smtplib
import sqlite3

from tests.channels.email import running

SENDER = "alice@customer.example"
MAIL = (f"From: Alice <{SENDER}>\r\nTo: support@example.com\r\nSubject: Where is my parcel?\r\n"
        "Message-ID: <retry-1@customer.example>\r\n\r\nIt did not come.\r\n").encode()


def send(port: int) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("client.example")
        s.mail(SENDER)
        s.rcpt("support@example.com")
        return s.data(MAIL)


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
