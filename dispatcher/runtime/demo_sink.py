"""The demo's mail relay: an SMTP server on 127.0.0.1 that accepts every message and keeps only a
count and, per recipient, the Message-ID of the last message relayed to them, so the demo's
acknowledgements and replies really leave through the outbound relay (their delivery status
turns `sent`) while nothing leaves the machine, and the demo's customers can answer them the way
a mail client does (In-Reply-To our message: the thread key that joins, issue 13).

Sits in the runtime beside demo.py; used by nothing else. Twisted's SMTP server, as the e-mail
edge's intake uses it, with a delivery that takes any sender and any recipient.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, protocol
from twisted.mail import smtp
from zope.interface import implementer


@implementer(smtp.IMessage)
class _Dropped:
    def __init__(self, sink: Sink, recipient: str) -> None:
        self.sink = sink
        self.recipient = recipient
        self.in_header = True
        self.message_id: str | None = None

    def lineReceived(self, line: bytes) -> None:  # noqa: N802 - Twisted's interface
        if not self.in_header:
            return
        if not line:
            self.in_header = False
        elif line[:11].lower() == b"message-id:":
            self.message_id = line[11:].strip().decode("ascii", "replace")

    def eomReceived(self) -> defer.Deferred:  # noqa: N802
        self.sink.received += 1
        if self.message_id:
            self.sink.last_to[self.recipient] = self.message_id
        return defer.succeed(None)

    def connectionLost(self) -> None:  # noqa: N802
        pass


@implementer(smtp.IMessageDelivery)
class Sink:
    """Accepts everything; `received` counts the messages; `last_to[address]` is the
    Message-ID of the last message relayed to that address."""

    def __init__(self) -> None:
        self.received = 0
        self.last_to: dict[str, str] = {}

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:  # noqa: N802
        return b"Received: by the Switchboard demo's sink"

    def validateFrom(self, helo: Any, origin: Any) -> Any:  # noqa: N802
        return origin

    def validateTo(self, user: Any) -> Any:  # noqa: N802
        recipient = str(user.dest).lower()
        return lambda: _Dropped(self, recipient)


class _Factory(protocol.ServerFactory):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def buildProtocol(self, addr: Any) -> smtp.ESMTP:  # noqa: N802 - Twisted's interface
        p = smtp.ESMTP()
        p.delivery = self.sink
        p.factory = self
        return p


def listen(reactor: Any, sink: Sink, host: str = "127.0.0.1") -> Any:
    """Listen on a free port of `host`; the listening port (`.getHost().port`)."""
    return reactor.listenTCP(0, _Factory(sink), interface=host)
