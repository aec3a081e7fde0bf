"""dispatcher/runtime/proxy.py through runtime/standby.py, on real sockets: a leader's HTTP
server (a twisted Site with an echo, a redirect, a 404, a slow answer, one that dies mid-body, an
endless stream) and standby sites in front of it, run in a process of their own on the asyncio
reactor as `serve` runs them (`serve_for_tests` below); http.client plays the browser. Checks
what arrives at the leader (method, path, query, headers, body, x-forwarded-*), what comes back
(status, redirects not followed, bodies), the 503s when no leader is known or reachable, a
truncated answer when the leader dies mid-body, and a log that never quotes a query or a token.
The standby site without a proxy: on a StringTransport.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from dispatcher.runtime.proxy import LeaderProxy
from dispatcher.runtime.standby import standby_site

ROOT = Path(__file__).resolve().parents[3]
START_SECONDS = 30.0
PROXY_TIMEOUT = 1.0  # the slow page answers after 10 s: well past it
SECRET_QUERY = "token=SECRETQUERY42"
SECRET_TOKEN = "Bearer SECRETTOKEN42"
UNREACHABLE = {"error": "no router reachable from this node: try again"}


# ---------------------------------------------------------------- the servers, in a subprocess


STREAMS = {"open": 0, "lost": 0}  # in the servers' process: the endless answers seen


def later(seconds: float, f, *args):
    from twisted.internet import reactor

    return reactor.callLater(seconds, f, *args)


class Echo(Resource):
    isLeaf = True

    def render(self, request):
        headers: dict[str, list[str]] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            headers.setdefault(name.decode().lower(), []).extend(v.decode() for v in values)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"x-leader", b"yes")
        return json.dumps({"method": request.method.decode(), "uri": request.uri.decode(),
                           "headers": headers, "body": request.content.read().decode()}).encode()


class Moved(Resource):
    isLeaf = True

    def render(self, request):
        request.setResponseCode(302)
        request.setHeader(b"location", b"/echo?moved=1")
        return b"moved"


class Missing(Resource):
    isLeaf = True

    def render(self, request):
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain")
        return b"not here"


class Slow(Resource):
    isLeaf = True

    def render(self, request):
        call = later(10.0, lambda: (request.write(b"late"), request.finish()))
        request.notifyFinish().addErrback(lambda _: call.active() and call.cancel())
        return NOT_DONE_YET


class Dies(Resource):
    isLeaf = True

    def render(self, request):
        request.setHeader(b"content-length", b"100000")
        request.write(b"x" * 1000)
        later(0.2, request.channel.transport.abortConnection)
        return NOT_DONE_YET


class Stream(Resource):
    """Writes a line every 50 ms until the client goes away."""

    isLeaf = True

    def render(self, request):
        STREAMS["open"] += 1
        ticking = {}

        def tick():
            request.write(b"tick\n")
            ticking["call"] = later(0.05, tick)

        def lost(_):
            STREAMS["lost"] += 1
            ticking["call"].cancel()

        tick()
        request.notifyFinish().addErrback(lost)
        return NOT_DONE_YET


class Streams(Resource):
    isLeaf = True

    def render(self, request):
        return json.dumps(STREAMS).encode()


class Big(Resource):
    isLeaf = True

    def render(self, request):
        return bytes(range(256)) * 8192  # 2 MiB


def leader_site() -> Site:
    root = Resource()
    for name, page in {"echo": Echo(), "moved": Moved(), "missing": Missing(), "slow": Slow(),
                       "dies": Dies(), "stream": Stream(), "streams": Streams(),
                       "big": Big()}.items():
        root.putChild(name.encode(), page)
    return Site(root)


def serve_for_tests() -> None:
    """Run the leader's site and three standby sites (proxy to it, to no leader, to a closed
    port); print `READY <leader> <standby> <no leader> <closed>` (ports); run until SIGTERM."""
    import logging

    from twisted.internet import reactor
    from twisted.internet.defer import succeed

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s %(message)s")
    leader = reactor.listenTCP(0, leader_site(), interface="127.0.0.1")
    leader_url = f"http://127.0.0.1:{leader.getHost().port}"
    closed = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
    closed_url = f"http://127.0.0.1:{closed.getHost().port}"
    closed.stopListening()

    async def the_leader() -> str:  # a coroutine, as a look-up in the database would be
        return leader_url

    def status():
        return {"role": "standby", "leader": "node-a", "epoch": 3}

    ports = [leader.getHost().port]
    for target in (the_leader, lambda: None, lambda: succeed(closed_url)):
        site = standby_site(status, LeaderProxy(reactor, target, timeout=PROXY_TIMEOUT))
        ports.append(reactor.listenTCP(0, site, interface="127.0.0.1").getHost().port)
    print("READY", *ports, flush=True)
    reactor.run()


# ---------------------------------------------------------------- the client side


class Nodes:
    def __init__(self, proc: subprocess.Popen, log: Path, ports: list[int]) -> None:
        self.proc = proc
        self.log = log
        self.leader, self.standby, self.no_leader, self.closed = ports

    def log_text(self) -> str:
        return self.log.read_text()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    log = tmp_path_factory.mktemp("proxy") / "nodes.log"
    code = ("from twisted.internet import asyncioreactor; asyncioreactor.install(); "
            "from tests.dispatcher.runtime.test_proxy import serve_for_tests; serve_for_tests()")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            proc.wait(timeout=START_SECONDS)
            pytest.fail(f"the test servers did not start: {line!r} {log.read_text()}")
        yield Nodes(proc, log, [int(p) for p in line.split()[1:]])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10.0):
    """One request on a fresh connection: (status, reason, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.reason, answer.headers, answer.read()
    finally:
        conn.close()


def assert_unreachable(status, headers, body) -> None:
    assert status == 503
    assert headers["retry-after"] == "5"
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert json.loads(body) == UNREACHABLE


def test_a_get_arrives_with_its_query_and_token_and_who_sent_it(nodes):
    status, _, headers, body = call(
        nodes.standby, "GET", f"/echo/a%20b?{SECRET_QUERY}&x=1",
        headers={"Authorization": SECRET_TOKEN, "X-Forwarded-For": "203.0.113.9",
                 "Host": "switchboard.example", "Connection": "keep-alive, x-private",
                 "X-Private": "hop", "Proxy-Authorization": "Basic abc", "TE": "trailers",
                 "X-Forwarded-Proto": "https"})
    assert status == 200
    assert headers["x-leader"] == "yes"
    seen = json.loads(body)
    assert seen["method"] == "GET"
    assert seen["uri"] == f"/echo/a%20b?{SECRET_QUERY}&x=1"
    got = seen["headers"]
    assert got["authorization"] == [SECRET_TOKEN]
    assert got["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert got["x-forwarded-host"] == ["switchboard.example"]
    assert got["x-forwarded-proto"] == ["http"]
    assert got["host"] == [f"127.0.0.1:{nodes.leader}"]
    for hop in ("x-private", "proxy-authorization", "te", "keep-alive"):
        assert hop not in got, hop
    assert "content-length" not in got and seen["body"] == ""
    assert got["x-switchboard-passed-on"] == ["1"]


def test_a_request_another_node_passed_on_is_never_passed_on_again(nodes):
    """Two standbys that each took the other for the leader (a stale read) answer 503, not
    a loop."""
    status, _, headers, body = call(nodes.standby, "GET", "/echo/x",
                                    headers={"X-Switchboard-Passed-On": "1"})
    assert_unreachable(status, headers, body)


def test_a_post_body_arrives(nodes):
    payload = json.dumps({"name": "Ada", "message": "é" * 5000}).encode()
    status, _, _, body = call(nodes.standby, "POST", "/echo/contact", body=payload,
                              headers={"Content-Type": "application/json"})
    assert status == 200
    seen = json.loads(body)
    assert seen["method"] == "POST"
    assert seen["body"].encode() == payload
    assert seen["headers"]["content-type"] == ["application/json"]
    assert seen["headers"]["content-length"] == [str(len(payload))]


def test_a_redirect_and_a_404_are_passed_on_as_they_are(nodes):
    status, _, headers, body = call(nodes.standby, "GET", "/moved")
    assert (status, headers["location"], body) == (302, "/echo?moved=1", b"moved")
    status, reason, headers, body = call(nodes.standby, "GET", "/missing/thing")
    assert (status, reason, body) == (404, "Not Found", b"not here")
    assert headers["content-type"] == "text/plain"


def test_a_head_gets_the_head_of_the_get(nodes):
    _, _, got, body = call(nodes.standby, "GET", "/big")
    status, _, headers, empty = call(nodes.standby, "HEAD", "/big")
    assert (status, empty) == (200, b"")
    assert headers["content-length"] == got["content-length"] == str(len(body))


def test_a_request_for_another_host_is_refused(nodes):
    with socket.create_connection(("127.0.0.1", nodes.standby), timeout=10) as raw:
        raw.sendall(b"GET http://203.0.113.1/echo HTTP/1.1\r\nHost: 203.0.113.1\r\n"
                    b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"only a path can be forwarded" in answer and b"x-leader" not in answer.lower()


def test_a_large_answer_is_streamed_whole(nodes):
    status, _, headers, body = call(nodes.standby, "GET", "/big")
    assert status == 200
    assert body == bytes(range(256)) * 8192
    assert headers["content-length"] == str(len(body))


def test_healthz_is_answered_by_the_standby_itself(nodes):
    for path in ("/healthz", "/healthz/"):
        status, _, headers, body = call(nodes.standby, "GET", path)
        assert status == 503
        assert headers["retry-after"] == "5"
        assert json.loads(body) == {"status": "standby", "role": "standby", "leader": "node-a",
                                    "epoch": 3}
    status, _, headers, body = call(nodes.standby, "GET", "/metrics")  # never the leader's
    assert status == 503 and "x-leader" not in headers


def test_no_leader_known_is_503_with_retry_after(nodes):
    status, _, headers, body = call(nodes.no_leader, "GET", f"/api/tasks?{SECRET_QUERY}",
                                    headers={"Authorization": SECRET_TOKEN})
    assert_unreachable(status, headers, body)
    status, _, _, body = call(nodes.no_leader, "GET", "/healthz")
    assert status == 503 and json.loads(body)["status"] == "standby"


def test_a_leader_not_listening_is_503(nodes):
    status, _, headers, body = call(nodes.closed, "POST", f"/api/tasks?{SECRET_QUERY}",
                                    body=b"{}", headers={"Authorization": SECRET_TOKEN})
    assert_unreachable(status, headers, body)


def test_a_leader_that_does_not_answer_in_time_is_503(nodes):
    started = time.monotonic()
    status, _, headers, body = call(nodes.standby, "GET", f"/slow?{SECRET_QUERY}",
                                    headers={"Authorization": SECRET_TOKEN})
    assert_unreachable(status, headers, body)
    assert time.monotonic() - started < PROXY_TIMEOUT + 5


def test_a_leader_dying_mid_body_leaves_the_client_a_truncated_answer(nodes):
    conn = http.client.HTTPConnection("127.0.0.1", nodes.standby, timeout=10)
    try:
        conn.request("GET", f"/dies?{SECRET_QUERY}", headers={"Authorization": SECRET_TOKEN})
        answer = conn.getresponse()
        assert answer.status == 200
        # cut (RST): the client may or may not have read the first bytes, never the rest
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            answer.read()
    finally:
        conn.close()


def test_a_client_that_goes_away_drops_the_leaders_connection(nodes):
    def streams():
        return json.loads(call(nodes.leader, "GET", "/streams")[3])

    before = streams()
    conn = http.client.HTTPConnection("127.0.0.1", nodes.standby, timeout=10)
    conn.request("GET", "/stream")
    answer = conn.getresponse()
    assert answer.read(10) == b"tick\ntick\n"
    conn.close()
    deadline = time.monotonic() + 5
    while streams()["lost"] == before["lost"] and time.monotonic() < deadline:
        time.sleep(0.05)
    after = streams()
    assert after["open"] == before["open"] + 1
    assert after["lost"] == before["lost"] + 1


def test_the_log_says_what_failed_never_a_query_or_a_token(nodes):
    secret = {"Authorization": SECRET_TOKEN}
    call(nodes.no_leader, "GET", f"/api/x?{SECRET_QUERY}", headers=secret)
    call(nodes.closed, "GET", f"/api/x?{SECRET_QUERY}", headers=secret)
    call(nodes.standby, "GET", f"/slow?{SECRET_QUERY}", headers=secret)
    test_a_leader_dying_mid_body_leaves_the_client_a_truncated_answer(nodes)
    time.sleep(0.2)
    text = nodes.log_text()
    assert "no router reachable from this node (leader not known): NoLeader" in text
    assert "ConnectionRefusedError" in text
    assert "TimeoutError" in text
    assert "broke off" in text
    assert "SECRET" not in text and "token=" not in text
    # at most one line a minute per kind of failure
    call(nodes.no_leader, "GET", "/api/y")
    time.sleep(0.2)
    assert nodes.log_text().count("(leader not known): NoLeader") == 1


# ---------------------------------------------------------------- without a proxy


def test_without_a_proxy_every_other_path_is_still_503() -> None:
    site = standby_site(lambda: {"role": "standby", "leader": None, "epoch": 0})
    channel = site.buildProtocol(IPv4Address("TCP", "10.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 40000))
    channel.makeConnection(transport)
    channel.dataReceived(b"GET /api/tasks HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"standby: this node does not route yet" in body
