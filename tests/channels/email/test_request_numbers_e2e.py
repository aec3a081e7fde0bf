"""Request numbers come from the database, end to end: two `switchboard serve` processes on one
PostgreSQL database (two nodes: `a` routes, `b` stands by and holds the mail its SMTP takes for
`a` to take in), each taking mail over real SMTP from several clients at once: no request number
is given twice; the acknowledgement each customer receives names the number its 250 named (or,
for mail `b` held, the number its task got when taken in); a reply to a request, received by the
other node, joins that task (threading reads the database, not the memory of the node that
receives the reply); and after a restart a reply to "[#N]" still joins its task.

Runs the real commands: the database prepared at the head schema, then `serve` twice with the
e-mail edge and a relay (an aiosmtpd sink catching the acknowledgements)."""

from __future__ import annotations

import re
import smtplib
import threading
import time
from contextlib import ExitStack
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests.channels.email import running
from tests.dispatcher.runtime.running import desk_env, prepare_support, relay, serving

CLIENTS, MAILS = 3, 8  # per node: clients sending at once, mails each
WAIT_SECONDS = 30.0
SECRET = b"numbers-e2e-secret-" + b"x" * 40


def send(port: int, sender: str, subject: str, in_reply_to: str | None = None) -> str:
    """One mail over SMTP; the request its 250 names ("Stored as SB-..."), "" when the node
    held it for the router ("held for the dispatcher": its number comes when taken in)."""
    headers = f"From: {sender}\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
    if in_reply_to:
        headers += f"In-Reply-To: <{in_reply_to}>\r\nReferences: <{in_reply_to}>\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=WAIT_SECONDS) as s:
        s.ehlo("client.test")
        s.mail(sender)
        s.rcpt("support@example.com")
        code, text = s.data(f"{headers}\r\nbody of {subject}\r\n".encode())
    assert code == 250, (code, text)
    if b"held for the dispatcher" in text:
        return ""
    return re.search(rb"SB-\d+", text).group().decode()


def request_of(url: str, subject: str) -> str:
    """The request number of the task the inbound mail `subject` is on ("" while it has none)."""
    found = running.rows(
        url, "select r.number from email_messages m join email_requests r on "
             "r.task_id = m.task_id where m.subject = :s and m.direction = 'in'", s=subject)
    return f"SB-{found[0][0]:06d}" if found else ""


def burst(port: int, node: str) -> dict[str, str]:
    """CLIENTS clients at once, MAILS mails each, every one from its own sender; subject ->
    the request its 250 named."""
    got: dict[str, str] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        try:
            for n in range(MAILS):
                subject = f"{node}-{c}-{n}"
                request = send(port, f"{subject}@customer.test", subject)
                with lock:
                    got[subject] = request
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT_SECONDS * 2)
    assert not failures, failures
    return got


def ack_of(url: str, request: str) -> str:
    """The Message-ID of our acknowledgement on the task of `request`."""
    [(message_id,)] = running.rows(
        url, "select m.message_id from email_messages m join email_requests r on "
             "r.task_id = m.task_id where r.number = :n and m.kind = 'ack'",
        n=int(request[3:]))
    return message_id


def inbound_of(url: str, request: str) -> list[str]:
    return [s for (s,) in running.rows(
        url, "select m.subject from email_messages m join email_requests r on "
             "r.task_id = m.task_id where r.number = :n and m.direction = 'in' "
             "order by m.created_at", n=int(request[3:]))]


@pytest.mark.postgres
def test_two_nodes_on_one_database_never_give_a_request_number_twice(
        tmp_path: Path, pg_url: str) -> None:
    prepare_support(pg_url)
    with relay() as (sink, relay_port), ExitStack() as nodes:
        served = {}
        for node in ("a", "b"):
            cwd = tmp_path / node
            cwd.mkdir()
            env, ports = desk_env(cwd, pg_url, relay_port, SECRET,
                                  SWITCHBOARD_CONSOLE_ENABLED="false")
            nodes.enter_context(serving(cwd, env, [ports.smtp, ports.http]))
            served[node] = (cwd, env, ports)
        got: dict[str, str] = {}
        results: dict[str, dict[str, str]] = {}
        threads = [threading.Thread(target=lambda n=n: results.setdefault(
            n, burst(served[n][2].smtp, n))) for n in served]
        for th in threads:
            th.start()
        for th in threads:
            th.join(WAIT_SECONDS * 3)
        for node in served:
            got.update(results[node])
        assert all(got[s] for s in got if s.startswith("a-"))  # a routes: its 250 names one
        assert not any(got[s] for s in got if s.startswith("b-"))  # b holds: no number yet
        deadline = time.monotonic() + WAIT_SECONDS
        while not all(request_of(pg_url, s) for s in got) and time.monotonic() < deadline:
            time.sleep(0.1)
        for subject in got:
            got[subject] = got[subject] or request_of(pg_url, subject)
            assert got[subject] == request_of(pg_url, subject), subject
        assert len(got) == 2 * CLIENTS * MAILS
        assert len(set(got.values())) == len(got), "a request number was given twice"
        stored = running.rows(pg_url, "select count(*) from email_requests")[0][0]
        assert stored == len(got)
        for subject, request in got.items():  # each number names the mail it was given to
            assert inbound_of(pg_url, request) == [subject]
        # The acknowledgement each customer gets names the number of its 250.
        deadline = time.monotonic() + WAIT_SECONDS
        while len(sink.accepted) < len(got) and time.monotonic() < deadline:
            time.sleep(0.1)
        acks = {e.rcpt_tos[0]: message_from_bytes(e.content, policy=policy.default)
                for e in sink.accepted}
        for subject, request in got.items():
            assert f"[#{request}]" in acks[f"{subject}@customer.test"]["Subject"]
        # A reply to a request node a gave, received (and held) by node b: it joins a's task
        # once taken in; one to a request of mail b held, received by a: it joins that task.
        request = got["a-0-0"]
        reply = send(served["b"][2].smtp, "a-0-0@customer.test", f"Re: a-0-0 [#{request}]",
                     in_reply_to=ack_of(pg_url, request))
        assert reply == ""
        deadline = time.monotonic() + WAIT_SECONDS
        while len(inbound_of(pg_url, request)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert inbound_of(pg_url, request) == ["a-0-0", f"Re: a-0-0 [#{request}]"]
        held = got["b-0-0"]
        reply = send(served["a"][2].smtp, "b-0-0@customer.test", f"Re: b-0-0 [#{held}]",
                     in_reply_to=ack_of(pg_url, held))
        assert reply == held
        assert inbound_of(pg_url, held) == ["b-0-0", f"Re: b-0-0 [#{held}]"]
        nodes.close()  # both nodes stop (SIGTERM, exit 0)
        cwd, env, ports = served["a"]
        with serving(cwd, env, [ports.smtp, ports.http]):  # after a restart
            request = got["b-1-1"]
            reply = send(ports.smtp, "b-1-1@customer.test", f"Re: [#{request}]",
                         in_reply_to=ack_of(pg_url, request))
            assert reply == request
            assert inbound_of(pg_url, request) == ["b-1-1", f"Re: [#{request}]"]
            fresh = send(ports.smtp, "new@customer.test", "after the restart")
            assert int(fresh[3:]) > max(int(r[3:]) for r in got.values())
