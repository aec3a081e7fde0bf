"""SMTP intake (channels/email/smtp.py): 250 only after the commit (in process, with a held
service Deferred), then against the real server on 127.0.0.1 with smtplib, swaks, raw sockets
(limits, SMTP smuggling), every CPython test message, and the chasquid dialogs."""

from __future__ import annotations

import ast
import re
import smtplib
import socket
import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.testing import StringTransport

from channels.email.config import EmailSettings, Routes
from channels.email.reading import Inline
from channels.email.smtp import HOLD_LINES, SmtpIntake
from dispatcher.service.mail import Received
from tests.channels.email import running
from tests.corpora import (
    CHASQUID_SMTP_DIALOGS,
    CPYTHON_EMAIL_DATA,
    MISSING_PARAMS,
    corpus,
    files,
    find,
)
from tests.support import missing, need_binary

# ---------------------------------------------------------------- in process: 250 after commit


class HeldMail:
    def __init__(self) -> None:
        self.received: list = []
        self.pending: list[Deferred] = []
        self.fail_with: Exception | None = None

    def receive(self, mail):
        self.received.append(mail)
        if self.fail_with is not None:
            return fail(self.fail_with)
        d: Deferred = Deferred()
        self.pending.append(d)
        return d


def dialog(mail: HeldMail, **settings) -> tuple:
    s = EmailSettings(recipients=running.ROUTES, **settings)
    intake = SmtpIntake(mail, s, Routes.from_settings(s))
    intake.reader = Inline()  # no worker processes without a running reactor
    proto = intake.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def send(proto, transport, *lines: bytes) -> list[bytes]:
    transport.clear()
    proto.dataReceived(b"".join(line + b"\r\n" for line in lines))
    return transport.value().splitlines()


def test_250_is_sent_only_after_the_service_committed() -> None:
    mail = HeldMail()
    proto, transport = dialog(mail)
    send(proto, transport, b"EHLO c.org", b"MAIL FROM:<a@c.org>",
         b"RCPT TO:<support@example.com>", b"RCPT TO:<sales@example.com>", b"DATA")
    replies = send(proto, transport, b"Subject: x", b"", b"hi", b".")
    assert replies == [] and len(mail.received) == 1  # one message for both recipients
    assert mail.received[0].queue == "support"
    assert mail.received[0].recipients == ("support@example.com", "sales@example.com")
    transport.clear()
    mail.pending[0].callback(Received("t1", "SB-000042", "new", "c1"))
    assert transport.value().startswith(b"250 2.0.0 Stored as SB-000042")


def test_lines_after_the_end_of_data_wait_for_its_answer_and_only_many_stop_the_reads() -> None:
    """Pipelined lines after the final `.` are answered after the message's 250, in order;
    a few wait without pausing the socket, HOLD_LINES of them stop its reads until the 250."""
    mail = HeldMail()
    proto, transport = dialog(mail)
    send(proto, transport, b"EHLO c.org", b"MAIL FROM:<a@c.org>",
         b"RCPT TO:<support@example.com>", b"DATA")
    assert send(proto, transport, b"Subject: x", b"", b"hi", b".", b"NOOP", b"QUIT") == []
    assert transport.producerState == "producing"
    transport.clear()
    mail.pending[0].callback(Received("t1", "SB-000001", "new", "c1"))
    assert [r[:3] for r in transport.value().splitlines()] == [b"250", b"250", b"221"]

    proto, transport = dialog(mail)
    send(proto, transport, b"EHLO c.org", b"MAIL FROM:<a@c.org>",
         b"RCPT TO:<support@example.com>", b"DATA")
    send(proto, transport, b"Subject: x", b"", b"hi", b".", *[b"NOOP"] * (HOLD_LINES - 1))
    assert transport.producerState == "producing"
    send(proto, transport, b"NOOP")
    assert transport.producerState == "paused"
    transport.clear()
    mail.pending[1].callback(Received("t2", "SB-000002", "new", "c1"))
    assert transport.producerState == "producing"
    assert [r[:3] for r in transport.value().splitlines()] == [b"250"] * (HOLD_LINES + 1)


def test_a_failed_commit_answers_451_so_the_sender_retries() -> None:
    mail = HeldMail()
    mail.fail_with = RuntimeError("database is locked")
    proto, transport = dialog(mail)
    send(proto, transport, b"HELO c.org", b"MAIL FROM:<a@c.org>",
         b"RCPT TO:<support@example.com>", b"DATA")
    assert send(proto, transport, b"x", b".")[-1].startswith(b"451 ")


def test_more_than_the_recipient_limit_gets_452() -> None:
    proto, transport = dialog(HeldMail(), max_recipients=2)
    replies = send(proto, transport, b"HELO c.org", b"MAIL FROM:<a@c.org>",
                   *[b"RCPT TO:<support@example.com>"] * 3)
    assert [r[:3] for r in replies[-3:]] == [b"250", b"250", b"452"]


# ---------------------------------------------------------------- real server, real clients


def smtp(server) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.port, timeout=30)


def simple(subject: str, sender: str = "alice@customer.org", body: str = "hello") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "support@example.com", subject
    msg.set_content(body)
    return msg.as_bytes()


def test_smtplib_message_becomes_a_stored_task(server) -> None:
    with smtp(server) as c:
        code, text = c.ehlo()
        assert code == 250 and b"SIZE 1048576" in text
        refused = c.sendmail("alice@customer.org", ["sales@example.com"], simple("Quote please"))
        assert refused == {}
        code, reply = c.noop()
    [(queue, attributes)] = running.rows(
        server.url, "select t.queue, t.attributes from tasks t join email_messages m "
        "on m.task_id = t.id where m.subject = 'Quote please'")
    assert queue == "sales" and '"request":"SB-' in attributes


def test_unknown_recipients_are_refused_with_550(server) -> None:
    with smtp(server) as c:
        c.ehlo()
        c.mail("a@c.org")
        assert c.rcpt("someone@elsewhere.org")[0] == 550
        assert c.rcpt("anything@example.com")[0] == 250  # our domain: the default queue


def test_size_limit_552(server) -> None:
    with smtp(server) as c:
        c.ehlo()
        with pytest.raises(smtplib.SMTPSenderRefused) as info:  # declared SIZE
            c.sendmail("a@c.org", ["support@example.com"], b"x" * 1_100_000)
        assert info.value.smtp_code == 552
    with smtp(server) as c:  # undeclared: counted while reading
        c.helo("c.org")
        with pytest.raises(smtplib.SMTPDataError) as info:
            c.sendmail("a@c.org", ["support@example.com"], (b"y" * 900 + b"\r\n") * 1200)
        assert info.value.smtp_code == 552


def raw_session(server, *chunks: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        f = s.makefile("rb")
        f.readline()
        for chunk in chunks:
            s.sendall(chunk)
        s.sendall(b"QUIT\r\n")
        return f.read()


def test_bare_lf_dot_is_refused_and_smuggling_fails(server) -> None:
    out = raw_session(
        server,
        b"HELO c.org\r\nMAIL FROM:<a@c.org>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n",
        b"Subject: smuggle-outer\r\n\r\nx\n.\nMAIL FROM:<evil@c.org>\r\n"
        b"RCPT TO:<support@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n",
    )
    codes = re.findall(rb"^(\d{3}) ", out, re.M)
    assert codes[-2:] == [b"521", b"221"]
    assert running.rows(server.url, "select id from email_messages where subject like 'smuggl%'"
                        ) == []


def test_bare_cr_is_refused(server) -> None:
    out = raw_session(
        server,
        b"HELO c.org\r\nMAIL FROM:<a@c.org>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n",
        b"Subject: cr\r\n\r\nx\r.\r\nmore\r\n.\r\n",
    )
    assert re.findall(rb"^(\d{3}) ", out, re.M)[-2] == b"521"


def test_too_long_command_lines_are_refused_long_text_lines_are_taken(server) -> None:
    out = raw_session(server, b"HELO " + b"a" * 600 + b"\r\n")
    assert out.startswith(b"500 ")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"HELO c.org\r\nMAIL FROM:<a@c.org>\r\nRCPT TO:<support@example.com>\r\n"
                  b"DATA\r\n")
        assert [f.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        s.sendall(b"Subject: long-line-1200\r\n\r\n" + b"z" * 1200 + b"\r\n.\r\n")
        assert f.readline().startswith(b"250 ")  # as Postfix: real mail has such lines
    [(raw,)] = running.rows(server.url, "SELECT raw FROM email_messages WHERE subject = :s",
                            s="long-line-1200")
    assert b"z" * 1200 + b"\r\n" in raw


def test_swaks_with_an_attachment(server, tmp_path) -> None:
    swaks = need_binary("swaks")
    report = tmp_path / "report.csv"
    report.write_bytes(b"a,b\r\n1,2\r\n")
    subprocess.run(
        [swaks, "--server", f"127.0.0.1:{server.port}", "--from", "bob@customer.org",
         "--to", "support@example.com", "--header", "Subject: swaks test",
         "--add-header", "X-Test-Id: 42", "--body", "see attachment", "--attach-type",
         "text/csv", "--attach-name", "report.csv", "--attach", f"@{report}", "--silent", "2"],
        check=True, timeout=30,
    )
    [(mid, raw)] = running.rows(server.url, "select id, raw from email_messages "
                                "where subject = 'swaks test'")
    assert b"X-Test-Id: 42" in raw
    assert running.rows(server.url, "select filename, content_type, size from email_attachments "
                        "where message_id = :m", m=mid) == [("report.csv", "text/csv", 10)]


def corpus_files() -> list[Path]:
    """The messages (msg_*.txt, the mbox); not the TSV that lists which tests use them, nor the
    images and sounds beside them in the interpreter's own copy. Missing: skip (strict: fail)."""
    data = corpus(CPYTHON_EMAIL_DATA)
    found = sorted(p for p in data.iterdir() if p.suffix in (".txt", ".mbox"))
    if not found:
        missing(f"no msg_*.txt in {data}")
    return found


def test_every_cpython_test_message_is_accepted_and_stored(server) -> None:
    messages = corpus_files()
    count = "select count(*) from email_messages where direction = 'in'"
    before = running.rows(server.url, count)[0][0]
    with smtp(server) as c:
        c.ehlo()
        for path in messages:
            assert c.sendmail(f"corpus-{path.stem}@test.org", ["support@example.com"],
                              path.read_bytes()) == {}
    assert running.rows(server.url, count)[0][0] - before == len(messages)
    flagged = running.rows(server.url, "select count(*) from email_messages where malformed")
    assert flagged[0][0] > 0  # the broken ones are stored and flagged


# ---------------------------------------------------------------- chasquid dialogs

# Where this server answers with another class than chasquid, by design (file, step): reason.
# bad_data.cmy ends with a message with a broken header line: chasquid refuses it (554), issue 4
# says a malformed message is still accepted, stored raw and flagged.
OVERRIDES = {("bad_data.cmy", "554 5.6.0 Error parsing message"): "2"}
SKIPPED = ("auth_",)  # we offer no AUTH on the intake port


def run_dialog(path: Path, port: int) -> list[tuple[str, str, str]]:
    """Play a .cmy script; return (expected, got, expected class) for every reply checked."""
    checks: list[tuple[str, str, str]] = []
    sock = f = None
    for raw_line in path.read_text().splitlines():
        line = raw_line.rstrip("\n")
        if not line.startswith("c "):
            continue
        op, _, arg = line[2:].partition(" ")
        if op in ("tcp_connect", "tls_connect"):
            if sock:
                sock.close()
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            f = sock.makefile("rb")
        elif op == "close":
            sock.close()
            sock = None
        elif op == "->":
            sock.sendall(arg.encode() + b"\r\n")
        elif op == "~>":
            sock.sendall(literal(arg).encode())
        elif op in ("<-", "<~", "<..."):
            got = read_reply(f, final_only=(op == "<..."))
            want = OVERRIDES.get((path.name, arg), arg.strip()[:1])
            checks.append((arg, got, want))
    if sock:
        sock.close()
    return checks


def literal(text: str) -> str:
    """A string literal of a dialog, with the `+` and `*` the scripts use: each constant read
    by `ast.literal_eval`, the operators applied here (never `eval`)."""

    def value(node: ast.AST):
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        return ast.literal_eval(node)

    return value(ast.parse(text.strip(), mode="eval").body)


def read_reply(f, final_only: bool) -> str:
    while True:
        line = f.readline().decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            return "<closed>"
        if len(line) < 4 or line[3] != "-":
            return line


@pytest.mark.parametrize("name", [p.name for p in files(CHASQUID_SMTP_DIALOGS, "*.cmy")
                                  if not p.name.startswith(SKIPPED)]
                         if find(CHASQUID_SMTP_DIALOGS) else MISSING_PARAMS)
def test_chasquid_dialog_reply_classes(server, name: str) -> None:
    checks = run_dialog(corpus(CHASQUID_SMTP_DIALOGS) / name, server.port)
    assert checks
    wrong = [(want_text, got) for want_text, got, want in checks if got[:1] != want]
    assert wrong == [], f"{name}: expected class of {[w for w, _ in wrong]}, got {wrong}"


def test_auth_is_not_offered_and_is_refused_cleanly(server) -> None:
    """The chasquid AUTH dialogs do not apply: intake takes mail for our own addresses only,
    so it offers no AUTH, and an AUTH attempt gets a permanent refusal, not a crash."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo("client.example.org")
        assert not smtp.has_extn("auth")
        code, _ = smtp.docmd("AUTH", "PLAIN AHVzZXIAcGFzcw==")
        assert 500 <= code < 600
        assert smtp.noop()[0] == 250  # the session goes on


def test_starttls_with_a_configured_certificate(tmp_path) -> None:
    """With tls_cert and tls_key set, STARTTLS is offered and mail sent over it is stored."""
    import ssl

    need_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=mx.example.com", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    url = f"sqlite:///{tmp_path / 'tls.db'}"
    server = running.start(url, tls_cert=str(cert), tls_key=str(key))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False  # the test certificate names mx.example.com
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as c:
            c.ehlo("client.example.org")
            assert c.has_extn("starttls")
            assert c.starttls(context=context)[0] == 220
            c.ehlo("client.example.org")
            assert not c.has_extn("starttls")  # already on TLS
            c.sendmail("tls@customer.org", ["support@example.com"],
                       b"Subject: over TLS\r\n\r\nsecret\r\n")
        stored = running.rows(url, "select subject from email_messages where direction = 'in'")
        assert [s for (s,) in stored] == ["over TLS"]
    finally:
        server.stop()


def test_quit_pipelined_after_the_end_of_data_still_gets_the_250_first(server) -> None:
    """RFC 2920: a client may send QUIT in the same packet as the final `.` (Postfix's does).
    The 250 (sent once the message is committed) must come before the 221 and the close, or the
    sender retries a message we already took."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO c.org\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        s.sendall(b"MAIL FROM:<a@c.org>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n")
        assert [f.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        s.sendall(b"Subject: pipelined-quit\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        rest = f.read()
    codes = re.findall(rb"^(\d{3}) ", rest, re.M)
    assert codes == [b"250", b"221"], rest
