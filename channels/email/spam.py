"""A spam scorer for the e-mail edge: SpamAssassin's `spamd` over its own protocol (SPAMC/1.5).

`SpamdClient.check(raw)` connects to spamd over TCP, sends `SYMBOLS SPAMC/1.5` with the
message, half-closes, and reads the answer: `SPAMD/1.x 0 EX_OK`, a `Spam: True ; 1002.7 / 5.0`
header and the names of the rules that hit in the body. It fires with a
`dispatcher.service.codification.SpamVerdict`, and fails (the service then treats the mail as
unscored, and never loses it) when spamd is unreachable, answers with an error code, says
something that is not SPAMD, or takes longer than `timeout` seconds. A message larger than
`max_bytes` is not sent at all (spamc's own default limit is 500 KB): unscored, "too large".
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from dispatcher.service.codification import SpamVerdict

PROTOCOL = b"SPAMC/1.5"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BYTES = 512_000
MAX_ANSWER_BYTES = 64 * 1024
EX_OK = 0
_STATUS = re.compile(rb"^SPAMD/(\d+\.\d+)\s+(\d+)\s+(.*)$")
_SPAM = re.compile(rb"^Spam:\s*(True|False|Yes|No)\s*;\s*(-?[\d.]+)\s*/\s*(-?[\d.]+)\s*$", re.I)
_RULE = re.compile(r"^[A-Za-z0-9_]+$")


class SpamdError(Exception):
    """spamd could not score the message (the text says why)."""


def request(raw: bytes, user: str = "") -> bytes:
    """The SPAMC/1.5 request for `raw` (rule names wanted: SYMBOLS)."""
    head = [b"SYMBOLS " + PROTOCOL, b"Content-length: %d" % len(raw)]
    if user:
        head.append(b"User: " + user.encode("ascii", "replace"))
    return b"\r\n".join(head) + b"\r\n\r\n" + raw


def parse_answer(data: bytes) -> SpamVerdict:
    """A SpamVerdict from spamd's whole answer; SpamdError if it is not a good one."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    status = _STATUS.match(lines[0].strip()) if lines else None
    if status is None:
        raise SpamdError(f"not a spamd answer: {lines[0][:80]!r}" if lines else "empty answer")
    code = int(status.group(2))
    if code != EX_OK:
        raise SpamdError(f"spamd error {code}: {status.group(3).decode('ascii', 'replace')}")
    verdict = None
    for line in lines[1:]:
        found = _SPAM.match(line.strip())
        if found:
            verdict = found
    if verdict is None:
        raise SpamdError("spamd answered without a Spam header")
    rules = tuple(r for r in (x.strip() for x in body.decode("ascii", "replace").split(","))
                  if _RULE.match(r))
    return SpamVerdict(scored=True, spam=verdict.group(1).lower() in (b"true", b"yes"),
                       score=float(verdict.group(2)), threshold=float(verdict.group(3)),
                       rules=rules)


class _Exchange(Protocol):
    """One request and its answer: spamd closes the connection after answering."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.buffer = bytearray()
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.payload)
        self.transport.loseWriteConnection()  # half-close: spamd reads to the end

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > MAX_ANSWER_BYTES:
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure) -> None:
        if self.done.called:
            return
        if len(self.buffer) > MAX_ANSWER_BYTES:
            self.done.errback(SpamdError("spamd's answer is too long"))
        else:
            self.done.callback(bytes(self.buffer))


class SpamdClient:
    def __init__(self, reactor: Any, host: str, port: int, timeout: float = DEFAULT_TIMEOUT,
                 max_bytes: int = DEFAULT_MAX_BYTES, user: str = "") -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.user = user

    def check(self, raw: bytes) -> defer.Deferred[SpamVerdict]:
        if len(raw) > self.max_bytes:
            return defer.succeed(SpamVerdict(False, error=f"too large to score ({len(raw)} "
                                                          f"bytes > {self.max_bytes})"))
        return defer.ensureDeferred(self._check(raw))

    async def _check(self, raw: bytes) -> SpamVerdict:
        exchange = _Exchange(request(raw, self.user))
        endpoint = TCP4ClientEndpoint(self.reactor, self.host, self.port, timeout=self.timeout)
        connecting = connectProtocol(endpoint, exchange)
        timer = self.reactor.callLater(self.timeout, self._too_slow, connecting, exchange)
        try:
            await connecting
            data = await exchange.done
        finally:
            if timer.active():
                timer.cancel()
        return parse_answer(data)

    def _too_slow(self, connecting: defer.Deferred, exchange: _Exchange) -> None:
        if not connecting.called:
            connecting.cancel()
        if exchange.transport is not None:
            exchange.transport.abortConnection()
        if not exchange.done.called:
            exchange.done.errback(SpamdError(f"spamd gave no answer in {self.timeout} s"))
