"""The HTTP side of the runtime (twisted.web): the site root the edges hang their pages and APIs
on (the admin edge's `/healthz` and `/report`, admin/). The app adds `/metrics` (Prometheus) to
the root (dispatcher/runtime/metrics.py, docs/operations.md).

Every connection of the site is held to `HttpLimits` (docs/operations.md "Limits under abuse"):
the request head must be complete within `header_timeout` of the connection (or of its first
byte, for the next request on a kept-alive one), however slowly it is dribbled (408); a body
within `body_timeout`; an idle connection closes after `idle_timeout`. A body larger than its
resource allows is refused with 413 before any of it is read or stored: by Content-Length at
once, a chunked one as soon as the count passes the cap. GET/HEAD/OPTIONS/TRACE take no body;
a resource states its own cap with a `max_body_bytes` attribute (found by walking the static
children of the root along the path); any other gets `max_body_bytes` of `[server]`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from dispatcher.guard import Throttled

from .config import ServerConfig

log = logging.getLogger(__name__)


class _WithoutQuery:
    """A request as the access log sees it: the path and the Referer without their query
    strings, which may carry a signed link (the console's files), a token or what a visitor
    searched for."""

    def __init__(self, request: Any) -> None:
        self._request = request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)

    @property
    def uri(self) -> bytes:
        return self._request.uri.split(b"?", 1)[0]

    def getHeader(self, name: bytes) -> bytes | None:  # noqa: N802 - twisted's name
        """The Referer without its query string either (the previous page's signed link)."""
        value = self._request.getHeader(name)
        if value is not None and name.lower() == b"referer":
            return value.split(b"?", 1)[0]
        return value


def access_line(timestamp: str, request: Any) -> str:
    return http.combinedLogFormatter(timestamp, _WithoutQuery(request))


# ---------------------------------------------------------------- limits of the site

NO_BODY_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})
# Bodies up to this size stay in memory; larger (yet allowed) ones go to a temporary file.
IN_MEMORY_BYTES = 100_000
# After a refusal, what the client still sends is read and dropped this long, so the answer is
# not lost to a reset (a "lingering close"), then the connection is aborted.
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class HttpLimits:
    header_timeout: float = 10.0
    body_timeout: float = 120.0
    idle_timeout: float = 60.0
    max_body_bytes: int = 16 * 1024 * 1024

    @classmethod
    def from_server(cls, server: ServerConfig) -> HttpLimits:
        return cls(server.header_timeout, server.body_timeout, server.idle_timeout,
                   server.max_body_bytes)


def _answer(status: int, reason: bytes, text: str,
            content_type: bytes = b"text/plain; charset=utf-8", body: bytes | None = None
            ) -> bytes:
    body = text.encode() if body is None else body
    return (b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason, content_type, len(body), body))


class GuardedRequest(Request):
    """A request whose body is counted against its cap before anything is stored."""

    refused = False
    body_limit = 0
    body_seen = 0
    body_owner: Any = None  # the resource whose cap applies (None: the site's default)

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted API
        self.body_limit, self.body_owner = self.channel.body_limit()
        if length is not None and length > self.body_limit:
            self.content = BytesIO()
            self.channel.too_large(self)
            return
        if max(length or 0, self.body_limit) < IN_MEMORY_BYTES or length == 0:
            self.content = BytesIO()
        else:
            super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        if self.refused:
            return
        self.body_seen += len(data)
        if self.body_seen > self.body_limit:
            self.channel.too_large(self)
            return
        super().handleContentChunk(data)


class GuardedChannel(http.HTTPChannel):
    """HTTP/1.1 with a deadline on the request head and on the body (see the module)."""

    _head_call: Any = None
    _body_call: Any = None
    _linger_call: Any = None
    _awaiting_head = True
    _discarding = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_head()

    def dataReceived(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._awaiting_head and self._head_call is None:
            self._start_head()
        super().dataReceived(data)

    def _start_head(self) -> None:
        self._head_call = self.callLater(self.site.limits.header_timeout, self._too_slow,
                                         "request head")

    def allHeadersReceived(self) -> None:  # noqa: N802 - Twisted API
        # HTTPChannel.allHeadersReceived, with the body's cap checked before "100 Continue".
        self._awaiting_head = False
        self._cancel("_head_call")
        busy = getattr(self.transport, "busy", None)
        if busy is not None:
            busy()  # no longer a candidate for eviction (dispatcher/net.py)
        req = self.requests[-1]
        req.parseCookies()
        self.persistent = self.checkPersistence(req, self._version)
        req.gotLength(self.length)
        if req.refused:
            return
        if self.length != 0:
            self._body_call = self.callLater(self.site.limits.body_timeout, self._too_slow,
                                             "request body")
        expect = req.requestHeaders.getRawHeaders(b"Expect")
        if expect and expect[0].lower() == b"100-continue" and self._version == b"HTTP/1.1":
            self._send100Continue()

    def allContentReceived(self) -> None:  # noqa: N802 - Twisted API
        self._cancel("_body_call")
        if self.requests and self.requests[-1].refused:
            return
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:  # noqa: N802 - Twisted API
        if self.persistent and not self._discarding:
            # The deadline starts with the next request's first byte (pipelined bytes are
            # replayed by super().requestDone).
            self._awaiting_head = True
            waiting = getattr(self.transport, "waiting", None)
            if waiting is not None:
                waiting()
        super().requestDone(request)

    def connectionLost(self, reason: Any) -> None:
        self._cancel("_head_call")
        self._cancel("_body_call")
        self._cancel("_linger_call")
        super().connectionLost(reason)

    def _cancel(self, name: str) -> None:
        call = getattr(self, name)
        if call is not None:
            if call.active():
                call.cancel()
            setattr(self, name, None)

    def body_limit(self) -> tuple[int, Any]:
        """The body cap of this request and the resource that states it (or None)."""
        if self._command.upper() in NO_BODY_METHODS:
            return 0, None
        return self.site.body_limit(self._path)

    def too_large(self, request: GuardedRequest) -> None:
        limit = request.body_limit
        self.site.refusals.warning(
            ("413", self._peer()), self.site.reactor.seconds(),
            "http: refused a body of %s bytes for %s %s from %s (limit %d)",
            self.length if self.length is not None else f"> {limit}",
            self._command.decode("latin-1")[:16], self._path[:200].decode("latin-1"),
            self._peer(), limit)
        text = f"request body too large: at most {limit} bytes\n" if limit else \
            "no request body allowed here\n"
        # A resource may answer in its own protocol's shape: `too_large(limit, request)` ->
        # (content type, body), e.g. the CTI's JSON error frame (the request has its head only).
        own = getattr(request.body_owner, "too_large", None)
        if own is not None:
            content_type, body = own(limit, request)
            self._refuse(request, _answer(413, b"Content Too Large", "", content_type, body))
        else:
            self._refuse(request, _answer(413, b"Content Too Large", text))

    def _too_slow(self, what: str) -> None:
        setattr(self, "_head_call" if what == "request head" else "_body_call", None)
        self.site.refusals.warning(("408", self._peer()), self.site.reactor.seconds(),
                                   "http: closed a connection from %s: %s not complete in time",
                                   self._peer(), what)
        request = self.requests[-1] if self.requests else None
        self._refuse(request, _answer(408, b"Request Timeout", f"{what} too slow\n"))

    def _refuse(self, request: Any, answer: bytes) -> None:
        if self._discarding:
            return
        if request is not None:
            request.refused = True
        self._cancel("_head_call")
        self._cancel("_body_call")
        self._discarding = True
        self.setTimeout(None)
        self.transport.write(answer)
        # Half-close: the answer goes out, what the client still sends is read and dropped.
        getattr(self.transport, "loseWriteConnection", self.transport.loseConnection)()
        self._linger_call = self.callLater(LINGER_SECONDS, self.transport.abortConnection)

    def _peer(self) -> str:
        return str(getattr(self.transport.getPeer(), "host", "?"))


class GuardedSite(Site):
    """A twisted.web Site whose connections are held to `HttpLimits`."""

    protocol = GuardedChannel
    requestFactory = GuardedRequest

    def __init__(self, resource: Resource, limits: HttpLimits | None = None, **kwargs: Any
                 ) -> None:
        self.limits = limits or HttpLimits()
        super().__init__(resource, timeout=self.limits.idle_timeout, **kwargs)
        self.refusals = Throttled(log)

    def body_limit(self, path: bytes) -> tuple[int, Any]:
        """The cap of the deepest resource along `path` that states one (and that resource),
        else the default (and None)."""
        node: Any = self.resource
        owner = node if getattr(node, "max_body_bytes", None) is not None else None
        for segment in path.split(b"?", 1)[0].split(b"/")[1:]:
            node = getattr(node, "children", {}).get(segment)
            if node is None:
                break
            if getattr(node, "max_body_bytes", None) is not None:
                owner = node
        if owner is None:
            return self.limits.max_body_bytes, None
        return owner.max_body_bytes, owner


def build_site(limits: HttpLimits | None = None) -> tuple[Site, Resource]:
    """The site and its root, bare: the edges hang their pages on it (the admin edge /healthz
    and /report), the app /metrics."""
    root = Resource()
    return GuardedSite(root, limits, logFormatter=access_line), root
