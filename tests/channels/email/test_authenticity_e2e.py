"""Who is who, end to end (issue 13): `switchboard serve` with the e-mail edge, mail sent over
real SMTP (smtplib, from 127.0.0.1 or from 127.0.0.2 standing for a trusted relay), the
acknowledgements caught by a real SMTP sink (aiosmtpd), the web form over HTTP, and what an
agent sees read with `switchboard tasks show`.

- `auth_mode = "relay"`: a forged From with Ann's address and her request number opens a new
  task linked to her thread; so does a forged `Authentication-Results` from an untrusted
  client; the same header from the trusted relay joins; a reply naming the Message-ID of our
  acknowledgement joins; the form never joins and answers the same whether the number exists.
- `auth_mode = "local"`: a DKIM-signed mail (key published by a DNS server of the test) joins
  by its request number alone; the same unsigned does not; a DNS server that never answers
  delays the mail by the timeout, and it is still stored.
"""

from __future__ import annotations

import json
import re
import smtplib
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from dispatcher.domain.queues import Queue
from dispatcher.storage import schema
from tests.channels.email.senders import SigningDomain, dns_server, message
from tests.dispatcher.runtime.running import Sink, desk_env, relay, run, serving
from tests.dispatcher.storage.wiring import wire

SECRET = b"auth-e2e-secret-" + b"x" * 40
WAIT_SECONDS = 30.0
TRUSTED = "127.0.0.2"  # the client address of "our relay" (the loopback net is all ours)
ANN = "Ann Example <ann@ann.test>"


@dataclass
class Served:
    tmp: Path
    env: dict[str, str]
    smtp: int
    http: int
    sink: Sink

    def send(self, raw: bytes, sender: str = "ann@ann.test", source: str = "127.0.0.1"
             ) -> str:
        """Send over SMTP; the request number of the final 250 ("Stored as SB-...")."""
        with smtplib.SMTP("127.0.0.1", self.smtp, source_address=(source, 0),
                          timeout=WAIT_SECONDS) as s:
            s.ehlo("client.test")
            s.mail(sender)
            s.rcpt("support@example.com")
            code, text = s.data(raw)
        assert code == 250, (code, text)
        return re.search(rb"SB-\d+", text).group().decode()

    def show(self, request: str) -> str:
        got = run("tasks", "show", request, cwd=self.tmp, env=self.env)
        assert got.code == 0, got.err
        return got.out

    def acks_to(self, rcpt: str) -> list:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            got = [message_from_bytes(e.content, policy=policy.default)
                   for e in self.sink.accepted if rcpt in e.rcpt_tos]
            if got:
                return got
            time.sleep(0.1)
        raise AssertionError(f"nothing reached the relay for {rcpt}")

    def form(self, **fields: str) -> tuple[int, dict]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http}/forms/contact",
            data=urllib.parse.urlencode(fields).encode(),
            headers={"Accept": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=WAIT_SECONDS) as resp:
            return resp.status, json.load(resp)


def prepare(url: str) -> None:
    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(w.store.put_queue(Queue("support")))
    finally:
        w.close()


@contextmanager
def served(tmp: Path, **settings: str) -> Iterator[Served]:
    url = f"sqlite:///{tmp / 'switchboard.db'}"
    prepare(url)
    with relay() as (sink, relay_port):
        env, ports = desk_env(tmp, url, relay_port, SECRET,
                              SWITCHBOARD_EMAIL_DEFAULT_QUEUE="support", **settings)
        with serving(tmp, env, (ports.smtp, ports.http)):
            yield Served(tmp, env, ports.smtp, ports.http, sink)


@pytest.fixture(scope="module")
def behind_relay(tmp_path_factory) -> Iterator[Served]:
    with served(tmp_path_factory.mktemp("auth-relay"), SWITCHBOARD_EMAIL_AUTH_MODE="relay",
                SWITCHBOARD_EMAIL_AUTH_SERV_ID="mx.test",
                SWITCHBOARD_EMAIL_AUTH_TRUSTED_RELAYS=f"{TRUSTED}/32") as s:
        yield s


def trail_of(shown: str) -> str:
    return shown.partition("Trail (")[2]


@pytest.mark.slow
def test_forged_from_links_our_message_id_and_the_trusted_relay_join(behind_relay) -> None:
    s = behind_relay
    first = s.send(message(ANN, "Printer on fire", "It burns."))
    assert first == "SB-000001"
    [ack] = s.acks_to("ann@ann.test")
    ours = ack["Message-ID"].strip()
    assert re.fullmatch(r"<sb\.[0-9a-f]{32}@[^>]+>", ours), ours

    # Mallory writes as Ann, with her request number: a new task, linked, not a join.
    forged = s.send(message(ANN, "Re: Printer on fire [#SB-000001]", "Send it to me."),
                    sender="mallory@evil.test")
    assert forged != first
    shown = s.show(forged)
    assert "linked to task" in shown and "sender not authenticated" in trail_of(shown)
    # ... even with a relay's verdict written by herself: she is not our relay.
    spoofed = s.send(message(ANN, "Re: [#SB-000001]", "Really me.",
                             Authentication_Results="mx.test; dmarc=pass header.from=ann.test"))
    assert spoofed not in (first, forged)
    assert "linked to task" in s.show(spoofed)
    assert "Conversation (2 messages)" in s.show(first)  # Ann's mail and our ack only

    # Ann answers our acknowledgement from her mail program: References names our Message-ID.
    reply = s.send(message(ANN, "Re: We received your message", "Any news?",
                           In_Reply_To=ours, References=ours))
    assert reply == first
    # Our relay checked her fresh mail (DMARC pass): the request number alone joins.
    relayed = s.send(message(ANN, "Printer again [#SB-000001]", "Still burning.",
                             Authentication_Results="mx.test; dmarc=pass header.from=ann.test"),
                     source=TRUSTED)
    assert relayed == first
    # The relay said DMARC failed: not a join.
    failed = s.send(message(ANN, "Re: [#SB-000001]", "x",
                            Authentication_Results="mx.test; dmarc=fail header.from=ann.test"),
                    source=TRUSTED)
    assert failed != first
    shown = s.show(first)
    assert "Conversation (4 messages)" in shown
    assert "Any news?" in shown and "Still burning." in shown and "Send it to me" not in shown


@pytest.mark.slow
def test_the_form_never_joins_and_answers_alike(behind_relay) -> None:
    s = behind_relay
    s.send(message(ANN, "Printer on fire", "It burns."))  # SB-000001 exists (Ann's)
    answers = []
    for subject in ("Re: [#SB-000001]", "Re: [#SB-999999]", "Re: [#SB-000001]"):
        for email in ("ann@ann.test", "nobody@ann.test"):
            code, body = s.form(name="Ann", email=email, subject=subject, message="It's me")
            answers.append((code, tuple(sorted(body)), body["status"]))
            shown = s.show(body["request"])
            assert "linked to task" not in shown
            assert "Conversation (1 messages)" in shown or "Conversation (2 messages)" in shown
    assert len(set(answers)) == 1 and answers[0] == (200, ("request", "status"), "received")
    assert "It's me" not in s.show("SB-000001")


@pytest.fixture(scope="module")
def ann_domain() -> SigningDomain:
    return SigningDomain("ann.test")


@pytest.mark.slow
def test_a_dkim_signed_mail_joins_by_its_number_and_a_silent_dns_only_delays(
        tmp_path_factory, ann_domain) -> None:
    slow = SigningDomain("slow.test")
    records = {ann_domain.record_name: ann_domain.record}
    with dns_server(records, silent={slow.record_name}) as dns, served(
            tmp_path_factory.mktemp("auth-local"), SWITCHBOARD_EMAIL_AUTH_MODE="local",
            SWITCHBOARD_EMAIL_AUTH_DNS_SERVERS=f"127.0.0.1:{dns.port}",
            SWITCHBOARD_EMAIL_AUTH_TIMEOUT="1") as s:
        first = s.send(message(ANN, "Printer on fire", "It burns."))
        signed = s.send(ann_domain.sign(message(ANN, "Printer [#SB-000001]", "Signed, Ann.")))
        assert signed == first
        assert ann_domain.record_name in dns.asked
        unsigned = s.send(message(ANN, "Printer [#SB-000001]", "Unsigned."))
        assert unsigned != first and "linked to task" in s.show(unsigned)
        # Signed by ann.test but From another domain: not aligned.
        other = s.send(ann_domain.sign(message("Bob <bob@bank.test>", "Re: [#SB-000001]")))
        assert other != first

        cy = s.send(message("Cy <cy@slow.test>", "Hello", "first"))
        started = time.monotonic()
        late = s.send(slow.sign(message("Cy <cy@slow.test>", f"Re: [#{cy}]", "second")))
        took = time.monotonic() - started
        assert late != cy and "linked to task" in s.show(late)
        assert slow.record_name in dns.asked
        assert 0.9 < took < 10, took
        shown = s.show(first)
        assert "Conversation (3 messages)" in shown and "Signed, Ann." in shown
        assert "dkim=pass" in trail_of(shown)
