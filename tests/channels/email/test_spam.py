"""Spam scoring against the real SpamAssassin spamd (tests/channels/email/spamd.py): the
SPAMC/1.5 request and the answer parsing on its real answers, then end to end through SMTP
(smtplib) into a dispatcher whose edge scores with `SpamdClient` on a real reactor: GTUBE is
parked in the spam queue unacknowledged, ham is routed with its score, and with spamd gone the
mail is stored unscored. The web form's submissions go through the same path."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from channels.email.spam import SpamdError, parse_answer, request
from tests.channels.email import codified, spamd

HAM = (b"From: Alice <alice@example.org>\r\nTo: support@example.com\r\nSubject: lunch\r\n"
       b"Date: Sun, 22 Nov 2026 12:00:00 +0000\r\nMessage-ID: <ham1@example.org>\r\n\r\n"
       b"Hi, are we still on for lunch tomorrow at noon?\r\nAlice\r\n")


def gtube(n: int = 1) -> bytes:
    return (f"From: x{n}@example.net\r\nTo: support@example.com\r\nSubject: offer {n}\r\n"
            f"Message-ID: <gtube{n}@example.net>\r\n\r\n{spamd.GTUBE}\r\n").encode()


@pytest.fixture(scope="module")
def server_spamd() -> Iterator[spamd.Spamd]:
    with spamd.running() as s:
        yield s


def test_the_protocol_against_the_real_spamd(server_spamd) -> None:
    ham = parse_answer(spamd.exchange(server_spamd.port, request(HAM, "nobody")))
    assert ham.scored and not ham.spam and ham.threshold == 5.0 and ham.score < 5.0
    spam = parse_answer(spamd.exchange(server_spamd.port, request(gtube(), "nobody")))
    assert spam.spam and spam.score > 1000 and "GTUBE" in spam.rules


@pytest.mark.parametrize("answer", [
    b"", b"HTTP/1.1 200 OK\r\n\r\n", b"SPAMD/1.1 76 Bad header line\r\n\r\n",
    b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n",
])
def test_bad_answers_are_errors(answer: bytes) -> None:
    with pytest.raises(SpamdError):
        parse_answer(answer)


def attributes(url: str) -> dict[str, dict]:
    from tests.channels.email.running import rows

    return {r.id: (json.loads(r.attributes) if isinstance(r.attributes, str) else r.attributes)
            | {"queue": r.queue} for r in rows(url, "SELECT id, queue, attributes FROM tasks")}


def test_smtp_mail_is_scored_and_spam_is_parked(server_spamd, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'spam.db'}"
    server = codified.start(url, spamd_host="127.0.0.1", spamd_port=server_spamd.port,
                            default_queue="support", domains="example.com")
    try:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
            smtp.sendmail("alice@example.org", ["support@example.com"], HAM)
            smtp.sendmail("x1@example.net", ["support@example.com"], gtube())
        tasks = attributes(url)
        assert len(tasks) == 2
        by_subject = {a["subject"]: a for a in tasks.values()}
        ham, spam = by_subject["lunch"], by_subject["offer 1"]
        assert ham["queue"] == "support" and ham["spam"]["scored"] and not ham["spam"]["spam"]
        assert spam["queue"] == "spam" and spam["spam"]["spam"] and "GTUBE" in spam["spam"]["rules"]
        assert spam["spam"]["queue"] == "support"
        from tests.channels.email.running import rows

        kinds = {(r.task_id, r.kind) for r in rows(url, "SELECT task_id, kind FROM email_messages")}
        [spam_id] = [k for k, a in tasks.items() if a["subject"] == "offer 1"]
        [ham_id] = [k for k, a in tasks.items() if a["subject"] == "lunch"]
        assert (ham_id, "ack") in kinds and (spam_id, "ack") not in kinds  # never acknowledged

        # The web form goes through the same path: scored, request number, ack.
        body = json.dumps({"name": "Bob", "email": "bob@example.org", "subject": "Help",
                           "message": "My parcel did not arrive."}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/forms/contact",
                                     body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200 and json.load(resp)["request"] == "SB-000003"
        form = [a for a in attributes(url).values() if a["subject"] == "Help"][0]
        assert form["spam"]["scored"] is True and form["queue"] == "support"
        page = urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/forms/contact",
                                      timeout=30).read().decode()
        assert "<form" in page
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{server.http_port}/forms/contact", b"x" * 70_000,
                {"Content-Type": "application/x-www-form-urlencoded"}), timeout=30)
        assert refused.value.code == 413
    finally:
        server.stop()


def test_with_spamd_gone_the_mail_is_stored_unscored(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'down.db'}"
    server = codified.start(url, spamd_host="127.0.0.1", spamd_port=spamd.free_port(),
                            spamd_timeout=2.0)
    try:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
            smtp.sendmail("alice@example.org", ["support@example.com"], HAM)
        [task] = attributes(url).values()
        assert task["queue"] == "support" and task["spam"]["scored"] is False
        assert task["spam"]["error"]
    finally:
        server.stop()
