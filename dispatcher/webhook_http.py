"""The HTTP client of the webhooks: the `WebhookPoster` port (dispatcher/service/ports.py) on
`twisted.web.client.Agent` with a persistent `HTTPConnectionPool`.

A top-level helper of `dispatcher` (like net.py): the composition root builds one and hands it
to the service's `Deliverer`. Nothing blocks the reactor: names are resolved and connections
made by the reactor, a POST and the reading of its answer are bounded by `timeout` in all
(connect included), the answer's body is read and thrown away (at most `MAX_BODY` bytes, then
the connection is dropped) so the connection can be reused. HTTPS certificates are verified
(Twisted's browser-like policy). Redirects are not followed: a 3xx is a failed attempt.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool
from twisted.web.http_headers import Headers

MAX_BODY = 64 * 1024
PER_HOST = 4  # persistent connections kept per receiver
IDLE_SECONDS = 60  # a kept connection is closed after this long unused


class NoAnswer(Exception):
    """The receiver did not answer (connect, headers and body) within the timeout."""


def _timed_out(result: Any, seconds: float) -> Any:
    raise NoAnswer(f"no answer within {seconds:g} s")


class _Discard(Protocol):
    """Reads an answer's body up to MAX_BODY and drops it; fires `done` when the body ended."""

    def __init__(self) -> None:
        self.done: Deferred[None] = Deferred(self._cancel)
        self.size = 0

    def _cancel(self, _: Deferred[None]) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_BODY and self.transport is not None:
            self.transport.stopProducing()  # the answer is what counts, not its body

    def connectionLost(self, reason: Failure = None) -> None:
        if not self.done.called:
            self.done.callback(None)


class HttpPoster:
    """`WebhookPoster` over HTTP(S)."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = PER_HOST
        self._pool.cachedConnectionTimeout = IDLE_SECONDS
        self._agent = Agent(reactor, pool=self._pool)

    def post(self, url: str, headers: dict[str, str], body: bytes,
             timeout: float) -> Deferred[int]:
        sent = Headers({k.encode(): [v.encode()] for k, v in headers.items()})
        d = self._agent.request(b"POST", url.encode(), sent, FileBodyProducer(BytesIO(body)))

        def answered(response: Any) -> Deferred[int]:
            discard = _Discard()
            response.deliverBody(discard)
            return discard.done.addCallback(lambda _: response.code)

        d.addCallback(answered)
        d.addTimeout(timeout, self._reactor, onTimeoutCancel=_timed_out)
        return d

    def close(self) -> Deferred[None]:
        """Close the kept connections."""
        return self._pool.closeCachedConnections()
