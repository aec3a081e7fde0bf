"""dispatcher/runtime/http.py: the site's limits, on a StringTransport and a Clock — the request
head's deadline (not reset by dribbled lines; restarted by the next request of a kept-alive
connection), the body deadline, body caps found along the path and enforced before the body is
stored (by Content-Length and while counting a chunked body). The real server under attack:
test_abuse_e2e.py."""

from __future__ import annotations

from io import BytesIO

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from dispatcher.runtime.http import GuardedSite, HttpLimits

LIMITS = HttpLimits(header_timeout=10.0, body_timeout=30.0, idle_timeout=60.0,
                    max_body_bytes=1000)


class Echo(Resource):
    isLeaf = True

    def __init__(self, cap: int | None = None) -> None:
        super().__init__()
        self.seen: list[bytes] = []
        if cap is not None:
            self.max_body_bytes = cap

    def render_GET(self, request) -> bytes:
        return b"ok"

    def render_POST(self, request) -> bytes:
        body = request.content.read()
        self.seen.append(body)
        return b"got %d" % len(body)


def site_with(**children: Resource) -> tuple[GuardedSite, Clock]:
    clock = Clock()
    root = Resource()
    for name, child in children.items():
        root.putChild(name.encode(), child)
    return GuardedSite(root, LIMITS, reactor=clock), clock


def connect(site: GuardedSite) -> tuple[object, StringTransport]:
    channel = site.buildProtocol(IPv4Address("TCP", "10.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 40000))
    channel.makeConnection(transport)
    return channel, transport


def test_a_dribbled_head_is_cut_at_the_deadline_from_the_connection() -> None:
    site, clock = site_with(echo=Echo())
    channel, transport = connect(site)
    channel.dataReceived(b"GET /echo HTTP/1.1\r\n")
    for i in range(4):
        clock.advance(2.0)
        channel.dataReceived(b"X-Line-%d: y\r\n" % i)  # each line well within the idle timeout
    assert transport.value() == b""
    clock.advance(2.0)  # 10 s after the connection
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert transport.disconnecting


def test_a_kept_alive_connection_gets_a_fresh_deadline_per_request() -> None:
    site, clock = site_with(echo=Echo())
    channel, transport = connect(site)
    channel.dataReceived(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in transport.value()
    transport.clear()
    clock.advance(30.0)  # idle between requests: the idle timeout's business, not the head's
    assert not transport.disconnecting
    channel.dataReceived(b"GET /echo HTTP/1.1\r\n")
    clock.advance(9.0)
    channel.dataReceived(b"Host: x\r\n\r\n")
    assert b"200 OK" in transport.value() and not transport.disconnecting


def test_a_slow_body_is_cut_at_the_body_deadline() -> None:
    site, clock = site_with(echo=Echo())
    channel, transport = connect(site)
    channel.dataReceived(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    for _ in range(6):
        clock.advance(5.0)
        channel.dataReceived(b"a")
    assert transport.value().startswith(b"HTTP/1.1 408 ")


def test_an_announced_body_over_the_cap_is_refused_before_it_is_read() -> None:
    small = Echo(cap=10)
    site, _ = site_with(small=small, echo=Echo())
    channel, transport = connect(site)
    channel.dataReceived(b"POST /small HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                         b"Content-Length: 11\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413 ")  # and no "100 Continue" first
    channel.dataReceived(b"a" * 11)
    assert small.seen == []
    assert isinstance(channel.requests[-1].content, BytesIO)  # no temporary file


def test_get_and_head_take_no_body_and_others_get_the_site_default() -> None:
    site, _ = site_with(echo=Echo())
    for head, refused in ((b"GET /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\n", True),
                          (b"POST /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", False),
                          (b"POST /echo HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", True),
                          (b"POST /nowhere HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", True)):
        channel, transport = connect(site)
        channel.dataReceived(head)
        assert transport.value().startswith(b"HTTP/1.1 413 ") == refused, head


def test_a_chunked_body_is_counted_and_cut_past_the_cap() -> None:
    small = Echo(cap=10)
    site, _ = site_with(small=small)
    channel, transport = connect(site)
    channel.dataReceived(b"POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"6\r\naaaaaa\r\n")
    assert transport.value() == b""
    channel.dataReceived(b"6\r\naaaaaa\r\n0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert small.seen == []  # never rendered


def test_a_chunked_body_within_the_cap_reaches_the_resource() -> None:
    small = Echo(cap=10)
    site, _ = site_with(small=small)
    channel, transport = connect(site)
    channel.dataReceived(b"POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\naaaaa\r\n5\r\nbbbbb\r\n0\r\n\r\n")
    assert small.seen == [b"aaaaabbbbb"]
    assert b"got 10" in transport.value()


def test_the_cap_is_the_deepest_stated_along_the_path() -> None:
    parent = Resource()
    parent.max_body_bytes = 5
    child = Echo()
    parent.putChild(b"child", child)
    site, _ = site_with(parent=parent)
    assert site.body_limit(b"/parent/child?x=1") == (5, parent)
    child.max_body_bytes = 50
    assert site.body_limit(b"/parent/child") == (50, child)
    assert site.body_limit(b"/other") == (1000, None)


def test_the_limits_come_from_the_server_section_and_are_checked() -> None:
    import pytest

    from dispatcher.runtime.config import ConfigError, load

    config = load(env={"SWITCHBOARD_SERVER_HEADER_TIMEOUT": "2.5",
                       "SWITCHBOARD_SERVER_MAX_BODY_BYTES": "4096"})
    assert HttpLimits.from_server(config.server) == HttpLimits(2.5, 120.0, 60.0, 4096)
    with pytest.raises(ConfigError) as bad:
        load(env={"SWITCHBOARD_SERVER_HEADER_TIMEOUT": "0",
                  "SWITCHBOARD_SERVER_MAX_CONNECTIONS_PER_IP": "0"})
    assert len(bad.value.problems) == 2
