"""The standby's way to the leader: a node that does not route (a standby, an edge node) passes
every HTTP request but `/healthz` and `/metrics` on to the leader's HTTP server
(runtime/standby.py mounts `LeaderProxy` under its site), so the console pages, the REST API,
the contact form and the sign-in work on every node.

What it promises:
- The request goes on as it came: method, path and query (`request.uri`), headers less the
  hop-by-hop ones and `host` (the client sets it for the leader), the body when there is one;
  plus `x-forwarded-for` (appended to the client's), `x-forwarded-proto` and `x-forwarded-host`.
- The answer comes back as the leader gave it: status, phrase and headers (less hop-by-hop
  ones), redirects not followed, the body streamed (the leader's connection is paused while the
  client reads slowly, and dropped when the client goes away).
- No leader known, none reachable, no answer's head within `timeout` seconds: 503 with
  `retry-after`, one line in the log at most once a minute per kind of failure. A leader that
  dies after the head: the client's connection is cut, so it sees a truncated answer, never a
  complete-looking one.
- The log names the leader and the kind of failure only: never a path's query, a header's value
  (tokens travel in both) or a body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import NO_BODY_CODES, PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from dispatcher.guard import Throttled

from .standby import RETRY_AFTER_SECONDS

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
MAX_PERSISTENT_PER_LEADER = 20
UNREACHABLE = json.dumps({"error": "no router reachable from this node: try again"}).encode()
PASSED_ON = b"x-switchboard-passed-on"  # set on what a node passes on: never passed on twice
NOT_A_PATH = json.dumps({"error": "only a path can be forwarded"}).encode()

# Headers of one connection, never of the message (RFC 9110 7.6.1); `proxy-*` too.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"te", b"trailer", b"trailers",
                        b"transfer-encoding", b"upgrade"})
# Not passed on to the leader: the client sets `host`, and frames the body itself.
NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length"}

Target = Callable[[], "Awaitable[str | None] | Deferred[str | None] | str | None"]


class PassedOnTwice(Exception):
    """A request another node already passed on (two nodes each took the other for the
    leader, for the second a stale read gave): never passed on again."""


class NoLeader(Exception):
    """No node holds the lease as far as this one knows."""


def _hop_by_hop(name: bytes, listed: set[bytes]) -> bool:
    return name in HOP_BY_HOP or name.startswith(b"proxy-") or name in listed


def _listed_in_connection(headers: Headers) -> set[bytes]:
    """The names a `connection` header declares hop-by-hop."""
    names: set[bytes] = set()
    for value in headers.getRawHeaders(b"connection", []):
        names.update(n.strip().lower() for n in value.split(b",") if n.strip())
    return names


def _kind(failure: Failure) -> str:
    """The failure's kind for the log: class names only, never a message (which may quote)."""
    if failure.check(ResponseFailed, ResponseNeverReceived):
        inner = sorted({r.type.__name__ for r in failure.value.reasons})
        return f"{failure.type.__name__}({', '.join(inner)})"
    return failure.type.__name__


def _timed_out(result: Any, timeout: float) -> Any:
    """The head did not come in time: say so, whatever the cancelled request failed with."""
    if isinstance(result, Failure):
        return Failure(TimeoutError(f"no answer's head within {timeout} s"))
    return result


class LeaderProxy(Resource):
    """Every request it renders goes on to the base URL `target()` gives (module doc)."""

    isLeaf = True

    def __init__(self, reactor: Any, target: Target, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.reactor = reactor
        self.target = target
        self.timeout = timeout
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = MAX_PERSISTENT_PER_LEADER
        self.agent = Agent(reactor, connectTimeout=timeout, pool=self.pool)
        self.failures = Throttled(log)

    def render(self, request: Any) -> Any:
        if not request.uri.startswith(b"/"):  # absolute-form or `*`: never another host
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"application/json")
            return NOT_A_PATH
        _Exchange(self, request).start()
        return NOT_DONE_YET

    def leader(self) -> Deferred[str | None]:
        """The leader's base URL, whether `target` returns it, a Deferred or a coroutine."""
        return maybeDeferred(self.target)

    def unreachable(self, request: Any, failure: Failure, leader: str | None) -> None:
        """Answer 503 and say so in the log (at most once an interval per kind)."""
        kind = _kind(failure)
        self.failures.warning(("unreachable", kind), self.reactor.seconds(),
                              "no router reachable from this node (leader %s): %s",
                              leader or "not known", kind)
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"retry-after", RETRY_AFTER_SECONDS)
        request.setHeader(b"content-length", b"%d" % len(UNREACHABLE))
        request.write(UNREACHABLE)
        request.finish()

    def broken(self, request: Any, failure: Failure, leader: str | None) -> None:
        """The leader's answer broke off after its head: cut the client's connection."""
        kind = _kind(failure)
        self.failures.warning(("broken", kind), self.reactor.seconds(),
                              "the answer of the leader %s broke off: %s", leader, kind)
        transport = request.channel.transport if request.channel is not None else None
        if transport is not None:
            transport.abortConnection()


class _Exchange:
    """One request on its way to the leader and its answer on the way back."""

    def __init__(self, proxy: LeaderProxy, request: Any) -> None:
        self.proxy = proxy
        self.request = request
        self.leader: str | None = None
        self.gone = False  # the client went away (or was cut off): nothing more to write
        self.pending: Deferred[Any] | None = None  # the look-up, then the leader's answer's head
        self.streaming: _Streaming | None = None
        request.notifyFinish().addErrback(self._client_gone)

    def start(self) -> None:
        d = Deferred.fromCoroutine(self._head())
        d.addTimeout(self.proxy.timeout, self.proxy.reactor, onTimeoutCancel=_timed_out)
        self.pending = d
        d.addCallbacks(self._answer, self._no_answer)

    async def _head(self) -> IResponse:
        if self.request.requestHeaders.hasHeader(PASSED_ON):
            raise PassedOnTwice()
        self.leader = await self.proxy.leader()
        if not self.leader:
            raise NoLeader()
        request = self.request
        url = self.leader.rstrip("/").encode() + request.uri
        return await self.proxy.agent.request(request.method, url, self._headers(),
                                              self._body())

    def _headers(self) -> Headers:
        incoming = self.request.requestHeaders
        listed = _listed_in_connection(incoming)
        headers = Headers()
        for name, values in incoming.getAllRawHeaders():
            lowered = name.lower()
            if lowered in NOT_FORWARDED or _hop_by_hop(lowered, listed):
                continue
            headers.setRawHeaders(name, values)
        address = self.request.getClientAddress()
        peer = getattr(address, "host", None)
        forwarded = incoming.getRawHeaders(b"x-forwarded-for", [])
        if peer:
            forwarded = [*forwarded, peer.encode()]
        if forwarded:
            headers.setRawHeaders(b"x-forwarded-for", [b", ".join(forwarded)])
        headers.setRawHeaders(b"x-forwarded-proto", [b"http"])
        headers.setRawHeaders(PASSED_ON, [b"1"])
        host = incoming.getRawHeaders(b"host")
        if host:
            headers.setRawHeaders(b"x-forwarded-host", host[:1])
        else:
            headers.removeHeader(b"x-forwarded-host")
        return headers

    def _body(self) -> FileBodyProducer | None:
        content = self.request.content
        if content is None or self.request.method in (b"GET", b"HEAD"):
            return None
        content.seek(0, 2)
        size = content.tell()
        content.seek(0)
        return FileBodyProducer(content) if size else None

    def _answer(self, response: IResponse) -> None:
        self.pending = None
        streaming = self.streaming = _Streaming(self)
        if not self.gone:
            request = self.request
            request.setResponseCode(response.code, response.phrase)
            listed = _listed_in_connection(response.headers)
            for name, values in response.headers.getAllRawHeaders():
                if not _hop_by_hop(name.lower(), listed):
                    request.responseHeaders.setRawHeaders(name, values)
            request.defaultContentType = None  # the leader's, or none
            if (response.length is not UNKNOWN_LENGTH and request.method != b"HEAD"
                    and response.code not in NO_BODY_CODES):
                request.setHeader(b"content-length", b"%d" % response.length)
        response.deliverBody(streaming)
        if self.gone:
            streaming.stop()

    def _no_answer(self, failure: Failure) -> None:
        self.pending = None
        if self.gone and failure.check(CancelledError):
            return
        if not self.gone:
            self.proxy.unreachable(self.request, failure, self.leader)

    def _client_gone(self, failure: Failure) -> None:
        self.gone = True
        if self.pending is not None:
            self.pending.cancel()
        if self.streaming is not None:
            self.streaming.stop()

    def body_ended(self, reason: Failure) -> None:
        """The leader's answer ended: completely, or broken off."""
        if self.gone:
            return
        request = self.request
        if request.producer is not None:
            request.unregisterProducer()
        if reason.check(ResponseDone, PotentialDataLoss):
            request.finish()
        else:
            self.gone = True
            self.proxy.broken(request, reason, self.leader)


class _Streaming(Protocol):
    """Writes the leader's body to the client as it comes; the client's pace paces the leader."""

    def __init__(self, exchange: _Exchange) -> None:
        self.exchange = exchange

    def connectionMade(self) -> None:
        if not self.exchange.gone:
            self.exchange.request.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        if not self.exchange.gone:
            self.exchange.request.write(data)

    def connectionLost(self, reason: Failure) -> None:
        self.exchange.body_ended(reason)

    def stop(self) -> None:
        """The client is gone: drop the leader's connection (it cannot go back to the pool)."""
        if self.transport is not None:
            self.transport.stopProducing()
