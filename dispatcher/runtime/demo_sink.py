"""The demo's mail relay: an SMTP server on 127.0.0.1 that accepts every message and keeps only a
count and, for each message id our mail answers (its In-Reply-To and References), the
Message-ID of the last message relayed that answers it, so the demo's acknowledgements and
replies really leave through the outbound relay (their delivery status turns `sent`) while
nothing leaves the machine, and the demo's customers can answer them the way a mail client does
(In-Reply-To our message: the thread key that joins, issue 13).

Sits in the runtime beside demo.py; used by nothing else. Twisted's SMTP server, as the e-mail
edge's intake uses it, with a delivery that takes any sender and any recipient.
"""

from __future__ import annotations

import re
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from twisted.internet import defer, protocol
from twisted.mail import smtp
from zope.interface import implementer

MSGID = re.compile(r"<[^<>\s]+>")
MAX_HEADER_LINES = 500


@implementer(smtp.IMessage)
class _Dropped:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.header: list[bytes] | None = []

    def lineReceived(self, line: bytes) -> None:
        if self.header is None:
            return
        if not line or len(self.header) >= MAX_HEADER_LINES:
            self.sink.relayed(b"\r\n".join(self.header) + b"\r\n\r\n")
            self.header = None
        else:
            self.header.append(line)

    def eomReceived(self) -> defer.Deferred:
        self.sink.received += 1
        return defer.succeed(None)

    def connectionLost(self) -> None:
        pass


@implementer(smtp.IMessageDelivery)
class Sink:
    """Accepts everything; `received` counts the messages; `answering[id]` is the Message-ID
    of the last message relayed whose In-Reply-To or References names `id`."""

    def __init__(self) -> None:
        self.received = 0
        self.answering: dict[str, str] = {}

    def relayed(self, header: bytes) -> None:
        fields = BytesHeaderParser(policy=compat32).parsebytes(header)
        ours = MSGID.findall(str(fields.get("Message-ID", "")))
        if not ours:
            return
        for named in MSGID.findall(f"{fields.get('In-Reply-To', '')} "
                                   f"{fields.get('References', '')}"):
            self.answering[named] = ours[0]

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: by the Switchboard demo's sink"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: Any) -> Any:
        return lambda: _Dropped(self)


class _Factory(protocol.ServerFactory):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def buildProtocol(self, addr: Any) -> smtp.ESMTP:
        p = smtp.ESMTP()
        p.delivery = self.sink
        p.factory = self
        return p


def listen(reactor: Any, sink: Sink, host: str = "127.0.0.1") -> Any:
    """Listen on a free port of `host`; the listening port (`.getHost().port`)."""
    return reactor.listenTCP(0, _Factory(sink), interface=host)
