"""The sender checks of the e-mail edge (channels/email/authenticity.py) on their own: DMARC
alignment, a trusted relay's Authentication-Results, local DKIM (dkimpy, the key answered by
an injected lookup or a real DNS server), and the verdict as `inbound` carries it."""

from __future__ import annotations

import queue
import threading

import dns.resolver
import pytest
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool

from channels.email import authenticity as a
from channels.email.authenticity import Authenticity, Verdict
from channels.email.translate import inbound
from dispatcher.domain.errors import InvalidValue
from tests.channels.email.senders import SigningDomain, dns_server, message


@pytest.fixture(scope="module")
def ann_domain() -> SigningDomain:
    return SigningDomain("ann.test")


def relayed(results: str, serv_id: str = "mx.test", sender: str = "ann@ann.test") -> bytes:
    return message(sender, "Re: [#SB-000001]",
                   Authentication_Results=f"{serv_id}; {results}")


def relay() -> Authenticity:
    return Authenticity(a.RELAY, "mx.test", "192.0.2.0/24, 2001:db8::1")


def test_alignment_is_by_organisational_domain() -> None:
    assert a.aligned("mail.ann.test", "ann.test")
    assert a.aligned("news.example.co.uk", "example.co.uk")
    assert not a.aligned("example.co.uk", "other.co.uk")
    assert not a.aligned("ann.test", "")


@pytest.mark.parametrize(("results", "ok"), [
    ("dmarc=pass header.from=ann.test", True),
    ("dkim=pass header.d=mail.ann.test; spf=fail smtp.mailfrom=x@y.test", True),
    ("spf=pass smtp.mailfrom=bounce@ann.test", True),
    ("dmarc=fail header.from=ann.test", False),
    ("dkim=pass header.d=evil.test; spf=pass smtp.mailfrom=x@evil.test", False),
    ("dmarc=pass header.from=evil.test", False),
    ("none", False),
])
def test_a_trusted_relays_results_count_when_aligned(results: str, ok: bool) -> None:
    verdict = relay().relayed(relayed(results), "192.0.2.7")
    assert verdict.authenticated is ok
    assert verdict.domain == ("ann.test" if ok else "")


def test_the_same_header_from_any_other_client_counts_for_nothing() -> None:
    verdict = relay().relayed(relayed("dmarc=pass header.from=ann.test"), "198.51.100.1")
    assert not verdict.authenticated and "not a trusted relay" in verdict.summary
    assert relay().relayed(relayed("dmarc=pass header.from=ann.test"), "2001:db8::1").authenticated


def test_only_the_topmost_header_of_our_relay_counts() -> None:
    raw = relayed("dmarc=pass header.from=ann.test", serv_id="evil.test")
    assert not relay().relayed(raw, "192.0.2.7").authenticated  # someone else's verdict
    # Ours below another one: the sender wrote it (our relay puts its own on top).
    forged = (b"Authentication-Results: other.test; none\r\n"
              + relayed("dmarc=pass header.from=ann.test"))
    assert not relay().relayed(forged, "192.0.2.7").authenticated


def test_two_from_addresses_are_never_aligned() -> None:
    raw = relayed("dmarc=pass header.from=ann.test").replace(
        b"From: ann@ann.test", b"From: ann@ann.test\r\nFrom: bob@evil.test")
    assert not relay().relayed(raw, "192.0.2.7").authenticated
    assert a.from_domain(message("Ann <ann@ann.test>", "x")) == "ann.test"


def test_unreadable_results_are_not_authenticated() -> None:
    raw = message("ann@ann.test", "x", Authentication_Results="mx.test; ;;=;(")
    verdict = relay().relayed(raw, "192.0.2.7")
    assert not verdict.authenticated


def test_local_dkim_pass_aligned_with_from(ann_domain) -> None:
    raw = ann_domain.sign(message("Ann <ann@ann.test>", "Re: [#SB-000001]"))
    evidence, summary = a.local_evidence(raw, "", "", "", 2.0, ann_domain.txt)
    assert evidence == [("dkim", "pass", "ann.test")] and "dkim=pass" in summary
    assert a.judge(evidence, a.from_domain(raw), summary).authenticated


def test_local_dkim_signed_by_another_domain_is_not_aligned(ann_domain) -> None:
    raw = ann_domain.sign(message("Bob <bob@bank.test>", "Re: [#SB-000001]"))
    evidence, summary = a.local_evidence(raw, "", "", "", 2.0, ann_domain.txt)
    assert evidence == [("dkim", "pass", "ann.test")]
    assert not a.judge(evidence, a.from_domain(raw), summary).authenticated


def test_a_changed_message_fails_dkim(ann_domain) -> None:
    raw = ann_domain.sign(message("Ann <ann@ann.test>", "Re: [#SB-000001]", text="pay 10"))
    tampered = raw.replace(b"pay 10", b"pay 99")
    evidence, _ = a.local_evidence(tampered, "", "", "", 2.0, ann_domain.txt)
    assert evidence == [("dkim", "fail", "ann.test")]
    evidence, _ = a.local_evidence(message("ann@ann.test", "x"), "", "", "", 2.0,
                                   ann_domain.txt)
    assert evidence == [("dkim", "none", "")]


def test_local_checks_ask_a_real_dns_server(ann_domain) -> None:
    """DKIM key and SPF record from a DNS server on UDP (the resolver of auth_dns_servers)."""
    records = {ann_domain.record_name: ann_domain.record,
               "ann.test": b"v=spf1 ip4:192.0.2.0/24 -all"}
    with dns_server(records) as server:
        resolver = a.make_resolver(f"127.0.0.1:{server.port}", 2.0)
        saved = dns.resolver.default_resolver
        dns.resolver.default_resolver = resolver  # what auth_dns_servers does for pyspf
        try:
            raw = ann_domain.sign(message("Ann <ann@ann.test>", "x"))
            evidence, _ = a.local_evidence(raw, "192.0.2.9", "mx.ann.test", "ann@ann.test",
                                           2.0, a.resolver_txt(resolver))
            forged, _ = a.local_evidence(message("ann@ann.test", "x"), "203.0.113.5",
                                         "evil.test", "ann@ann.test", 2.0,
                                         a.resolver_txt(resolver))
        finally:
            dns.resolver.default_resolver = saved
    assert evidence == [("dkim", "pass", "ann.test"), ("spf", "pass", "ann.test")]
    assert forged == [("dkim", "none", ""), ("spf", "fail", "ann.test")]
    assert ann_domain.record_name in server.asked


def test_off_authenticates_nothing() -> None:
    d = Authenticity().check(relayed("dmarc=pass header.from=ann.test"), "192.0.2.7")
    got: list[Verdict] = []
    d.addCallback(got.append)
    assert got and not got[0].authenticated


@pytest.mark.parametrize("kw", [
    {"mode": "strict"}, {"mode": a.RELAY}, {"mode": a.RELAY, "serv_id": "mx",
                                             "trusted_relays": "not-an-ip"},
    {"mode": a.LOCAL, "timeout": 0}, {"mode": a.LOCAL, "dns_servers": "127.0.0.1:x"},
])
def test_bad_settings_are_refused_at_start(kw) -> None:
    with pytest.raises(InvalidValue):
        Authenticity(**kw)


def test_inbound_keeps_a_verdict_only_for_the_from_it_read() -> None:
    raw = message("Ann <ann@ann.test>", "x")
    yes = inbound(raw, "support", "ann@ann.test", (), verdict=Verdict(True, "ann.test", "dkim"))
    assert yes.authenticated and yes.auth_summary == "dkim"
    # The checks vouched for another domain than the From the service reads: nothing.
    other = inbound(raw, "support", "", (), verdict=Verdict(True, "evil.test", "dkim"))
    assert not other.authenticated
    assert not inbound(raw, "support", "", ()).authenticated


def test_polled_mail_trusts_the_mailbox_servers_results_only_when_told() -> None:
    raw = relayed("dmarc=pass header.from=ann.test")
    assert a.mailbox_verdict(raw, True, "mx.test").authenticated
    assert not a.mailbox_verdict(raw, False, "mx.test").authenticated
    assert not a.mailbox_verdict(raw, True, "").authenticated
    assert not a.mailbox_verdict(relayed("dmarc=pass header.from=ann.test", serv_id="x.test"),
                                 True, "mx.test").authenticated


class ThreadedClock(Clock):
    """A virtual clock whose thread pool is real: results come back through `pump()`, as the
    reactor's callFromThread would bring them."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = ThreadPool(0, 2, name="test-authenticity")
        self.pool.start()
        self.from_threads: queue.Queue = queue.Queue()

    def getThreadPool(self) -> ThreadPool:
        return self.pool

    def callFromThread(self, f, *args, **kw) -> None:
        self.from_threads.put((f, args, kw))

    def pump(self, seconds: float = 5.0) -> None:
        f, args, kw = self.from_threads.get(timeout=seconds)
        f(*args, **kw)


def test_local_check_runs_off_the_reactor_and_a_hung_lookup_times_out(ann_domain, caplog):
    clock = ThreadedClock()
    release = threading.Event()

    def hung(name, timeout=5):
        release.wait(10)
        return None

    try:
        checks = Authenticity(a.LOCAL, timeout=1.0, reactor=clock, txt=ann_domain.txt)
        raw = ann_domain.sign(message("Ann <ann@ann.test>", "x"))
        got: list[Verdict] = []
        checks.check(raw).addCallback(got.append)
        clock.pump()
        assert got and got[0].authenticated and got[0].domain == "ann.test"

        stuck = Authenticity(a.LOCAL, timeout=1.0, reactor=clock, txt=hung)
        late: list[Verdict] = []
        for _ in range(2):
            stuck.check(raw, "192.0.2.1").addCallback(late.append)
        assert late == []  # the reactor was never blocked: the answer is pending
        clock.advance(3.0)  # 2 x timeout + 1
        assert [v.authenticated for v in late] == [False, False]
        assert all("temperror" in v.summary for v in late)
        assert len([r for r in caplog.records if "sender checks failed" in r.message]) == 1
    finally:
        release.set()
        clock.pool.stop()
