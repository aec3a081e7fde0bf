"""The outbound relay: takes due e-mails from the outbox (through `Mail.due`) and hands them to
the configured SMTP relay with twisted.mail's client; reports each attempt back (`Mail.sent`,
`Mail.failed`), which records the delivery status in the task's trail and decides on retries
(4xx, network errors: backoff) and dead letters (5xx)."""

from __future__ import annotations

import logging
from io import BytesIO
from typing import Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.mail import smtp

from dispatcher.service.mail import Mail
from dispatcher.service.ports import OutboundMail

from .config import EmailSettings

log = logging.getLogger(__name__)

BATCH = 20
CONNECT_TIMEOUT = 30


def reply_code(failure: Any) -> int | None:
    """The SMTP code of a failed delivery; None when it never got one (network error)."""
    value = failure.value
    code = getattr(value, "code", None)
    if isinstance(code, int) and 400 <= code < 600:
        return code
    return None


class Relay:
    def __init__(self, reactor: Any, mail: Mail, settings: EmailSettings) -> None:
        self.reactor = reactor
        self.mail = mail
        self.settings = settings
        self._loop = LoopingCall(self.tick)
        self._loop.clock = reactor
        self._in_flight: set[int] = set()
        self._busy = False

    def start(self) -> None:
        if self.settings.relay_host:
            self._loop.start(self.settings.relay_interval, now=True).addErrback(
                lambda f: log.error("relay loop stopped: %s", f.getTraceback()))

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def tick(self) -> defer.Deferred | None:
        if self._busy:
            return None
        self._busy = True
        d = self.mail.due(BATCH)
        d.addCallback(self._send_all)
        d.addErrback(lambda f: log.error("outbox: %s", f.getErrorMessage()))
        d.addBoth(self._idle)
        return d

    def _idle(self, result: Any) -> Any:
        self._busy = False
        return None

    def _send_all(self, items: list[OutboundMail]) -> defer.Deferred:
        todo = [i for i in items if i.outbox_id not in self._in_flight]
        return defer.DeferredList([self.send(item) for item in todo], consumeErrors=True)

    def send(self, item: OutboundMail) -> defer.Deferred:
        self._in_flight.add(item.outbox_id)
        s = self.settings
        d = smtp.sendmail(
            s.relay_host.encode(), item.mail_from.encode(), [r.encode() for r in item.rcpt],
            # twisted's client turns each LF into CRLF on the wire: hand it LF line ends.
            BytesIO(item.raw.replace(b"\r\n", b"\n")), port=s.relay_port,
            username=s.relay_user.encode() or None, password=s.relay_password.encode() or None,
            requireAuthentication=bool(s.relay_user), requireTransportSecurity=s.relay_starttls,
        )
        d.addCallbacks(self._sent, self._failed, (item,), None, (item,))
        d.addBoth(self._done, item)
        return d

    def _sent(self, result: Any, item: OutboundMail) -> defer.Deferred:
        accepted, per_rcpt = result if isinstance(result, tuple) else (1, [])
        refused = [(addr, code, resp) for addr, code, resp in per_rcpt if not 200 <= code < 300]
        if refused and not accepted:
            addr, code, resp = refused[0]
            return self.mail.failed(item, code, _text(resp))
        return self.mail.sent(item, f"{accepted} accepted")

    def _failed(self, failure: Any, item: OutboundMail) -> defer.Deferred:
        code = reply_code(failure)
        return self.mail.failed(item, code, failure.getErrorMessage()[:500])

    def _done(self, result: Any, item: OutboundMail) -> Any:
        self._in_flight.discard(item.outbox_id)
        return result


def _text(resp: Any) -> str:
    return resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
