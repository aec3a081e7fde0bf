"""SMTP intake on twisted.mail: each accepted message becomes a task (or joins one), and the
final reply to DATA is 250 only after `Mail.receive` has committed it (`eomReceived` returns
its Deferred). A failed commit answers 451 so the sender retries.

Limits (RFC 5321 4.5.3.1): command lines 512 octets (with CRLF), 100 recipients per
transaction, the configured message size (advertised as SIZE, refused with 552). Text lines
over RFC 5321's 1000 octets are accepted, as Postfix does: real clients send them. Parsing
and translating run off the reactor within a time budget (reading.py). An end of data spelt with a bare CR or LF (`\\n.\\n`, `\\r\\n.\\n`, `\\n.\\r\\n`, ...)
is refused with 521: other servers on the path might take it as the end (SMTP smuggling). The
rest of that data is swallowed up to the real `CRLF.CRLF`, so nothing in it can be read as a
command. Other bare LFs (what `smtplib.sendmail` sends for `as_bytes()`) are accepted.
Recipients are mapped to queues; an unknown recipient
gets 550 (we are not a relay). Each reply is one write, sent at once (prompt.py).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import ServerFactory
from twisted.mail import smtp
from twisted.mail.interfaces import IMessageDelivery, IMessageSMTP
from zope.interface import implementer

from dispatcher.service.mail import Mail

from . import errors as e
from . import prompt
from .authenticity import Authenticity, Verdict
from .config import EmailSettings, Routes, limits_from
from .reading import Inline, Reader

log = logging.getLogger(__name__)

MAX_COMMAND_LINE = 512 - 2  # without CRLF
MAX_PATH = 256  # RFC 5321 4.5.3.1.3, with the angle brackets
BUFFER_LIMIT = 64 * 1024  # beyond this without CRLF, the client is not speaking SMTP: drop it
SIZE_PARAM = re.compile(rb"\bSIZE=(\d{1,20})\b", re.I)
PATH = re.compile(rb"<([^<>]*)>")
BARE_BREAK = re.compile(rb"\r|\n")  # inside one CRLF-delimited line: a bare CR or LF
HELD = object()  # what `deliver` gives for a message held for the router (held.py)
# Lines a client may send past a final `.` before its answer (a pipelined QUIT, the next
# transaction) before the socket stops being read: `IntakeESMTP._hold`.
HOLD_LINES = 64


@implementer(IMessageSMTP)
class Capture:
    """The message of one transaction (delivered once however many recipients it has)."""

    def __init__(self, edge: SmtpIntake, envelope_from: str, recipients: list[str],
                 queue: str, client: str = "", helo: str = "") -> None:
        self.edge = edge
        self.envelope_from = envelope_from
        self.recipients = recipients
        self.queue = queue
        self.client = client  # the SMTP client's IP address and HELO name: sender checks
        self.helo = helo
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> defer.Deferred:
        lines, self.lines = self.lines, []
        lines.append(b"")  # the last line's CRLF, in the one join (no second copy)
        raw = b"\r\n".join(lines) if len(lines) > 1 else b"\r\n"
        recipients = tuple(self.recipients)
        d = self.edge.authenticity.check(raw, self.client, self.helo, self.envelope_from)
        d.addCallback(lambda verdict: self.edge.deliver(raw, self.queue, self.envelope_from,
                                                        recipients, verdict=verdict))
        return d

    def connectionLost(self) -> None:
        self.lines = []


@implementer(IMessageSMTP)
class Ignored:
    """The other recipients of a transaction: the one `Capture` stores the message."""

    def lineReceived(self, line: bytes) -> None:
        pass

    def eomReceived(self) -> defer.Deferred:
        return defer.succeed(None)

    def connectionLost(self) -> None:
        pass


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value or "")


@implementer(IMessageDelivery)
class Delivery:
    """Per connection: checks senders and recipients, collects the transaction."""

    def __init__(self, edge: SmtpIntake, protocol: IntakeESMTP) -> None:
        self.edge = edge
        self.protocol = protocol
        self._reset("")

    def _reset(self, envelope_from: str, helo: Any = None) -> None:
        self.envelope_from = envelope_from
        self.helo = helo or (b"", b"")
        self.recipients: list[str] = []
        self.queue: str | None = None
        self.captured = False
        self.capture: Capture | None = None  # the transaction's, once DATA made it

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        client = helo[1] if isinstance(helo[1], bytes) else str(helo[1]).encode()
        name = (helo[0] or b"unknown")[:64]
        return (b"Received: from " + re.sub(rb"[^\x21-\x7e]", b"?", name) + b" ([" + client
                + b"])\r\n\tby " + self.edge.hostname.encode("ascii", "replace")
                + b" with ESMTP (switchboard); " + smtp.rfc822date())

    def validateFrom(self, helo: Any, origin: smtp.Address) -> smtp.Address:
        self._reset(str(origin) if origin else "", helo)
        return origin

    def validateTo(self, user: smtp.User):
        if len(self.recipients) >= self.edge.settings.max_recipients:
            raise e.server_error(e.TOO_MANY_RECIPIENTS)
        address = str(user.dest)
        queue = self.edge.routes.queue_for(address)
        if queue is None:
            raise e.server_error(e.NO_SUCH_MAILBOX)
        self.recipients.append(address)
        if self.queue is None:
            self.queue = queue
        return self._message

    def _message(self):
        if self.captured:
            return Ignored()
        self.captured = True
        name, client = (_text(part) for part in self.helo)
        self.capture = Capture(self.edge, self.envelope_from, self.recipients, self.queue or "",
                               client=client, helo=name)
        return self.capture


class IntakeESMTP(smtp.ESMTP):
    noisy = False
    timeout = 300
    MAX_LENGTH = BUFFER_LIMIT

    def __init__(self, edge: SmtpIntake, context_factory: Any = None) -> None:
        super().__init__(contextFactory=context_factory)
        self.edge = edge
        self.host = edge.hostname
        self.delivery = Delivery(edge, self)
        self._data_bytes = 0
        # Between DATA's 354 and the final `.`: the message its ordinary lines go to at once
        # (`lineReceived`), None otherwise.
        self._capture: Capture | None = None
        self._held: list[bytes] | None = None  # lines received while a message is committed
        self._paused = False  # the socket is not read: HOLD_LINES are held (`_hold`)

    def extensions(self) -> dict:
        ext = super().extensions()
        ext.pop(b"AUTH", None)
        ext[b"SIZE"] = [str(self.edge.settings.max_message_bytes).encode()]
        ext[b"8BITMIME"] = None
        ext[b"ENHANCEDSTATUSCODES"] = None
        return ext

    def sendCode(self, code: int, message: bytes = b"") -> None:  # noqa: N802 - Twisted API
        """One reply (every line of a multi-line one) in one write, sent at once (prompt.py)."""
        lines = message.splitlines() or [b""]
        head = b"%03d" % code
        last = len(lines) - 1
        prompt.send(self.transport, b"".join(
            head + (b" " if i == last else b"-") + line + b"\r\n" for i, line in enumerate(lines)))

    def sendLine(self, line: bytes) -> None:  # noqa: N802 - Twisted API
        prompt.send(self.transport, line + self.delimiter)

    def state_COMMAND(self, line: bytes) -> None:
        if len(line) > MAX_COMMAND_LINE:
            self.sendCode(*e.LINE_TOO_LONG)
            return
        super().state_COMMAND(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.sendCode(*e.LINE_TOO_LONG)
        self.transport.loseConnection()

    def do_NOOP(self, rest: bytes) -> None:
        self.sendCode(250, b"2.0.0 OK")

    def do_HELO(self, rest: bytes) -> None:
        if not rest.strip():
            self.sendCode(*e.EMPTY_HELO)
            return
        super().do_HELO(rest)

    def do_EHLO(self, rest: bytes) -> None:
        if not rest.strip():
            self.sendCode(*e.EMPTY_HELO)
            return
        super().do_EHLO(rest)

    def _bad_path(self, rest: bytes) -> tuple[int, bytes] | None:
        m = PATH.search(rest)
        if m is None:
            return None  # twisted's own syntax check answers
        path = m.group(1)
        if len(path) + 2 > MAX_PATH:
            return e.ADDRESS_TOO_LONG
        if not path:
            return None
        local, at, domain = path.rpartition(b"@")
        if not at or not local or not domain or len(local) > 64:
            return e.BAD_ADDRESS
        try:
            domain.decode("ascii").encode("idna")
            if domain.lower().startswith(b"xn--"):
                domain.decode("ascii").encode().decode("idna")
        except (UnicodeError, ValueError):
            return e.BAD_ADDRESS
        return None

    def do_MAIL(self, rest: bytes) -> None:
        size = SIZE_PARAM.search(rest)
        if size is not None and int(size.group(1)) > self.edge.settings.max_message_bytes:
            self.sendCode(*e.MESSAGE_TOO_BIG)
            return
        bad = self._bad_path(rest)
        if bad is not None:
            self.sendCode(*bad)
            return
        super().do_MAIL(rest)

    def do_RCPT(self, rest: bytes) -> None:
        bad = self._bad_path(rest) if self._from else None
        if bad is not None:
            self.sendCode(*bad)
            return
        super().do_RCPT(rest)

    def do_DATA(self, rest: bytes) -> None:
        self._data_bytes = 0
        self.delivery.capture = None
        super().do_DATA(rest)
        if self.mode == smtp.DATA:  # 354 sent: the message's lines follow
            self._capture = self.delivery.capture

    def dataReceived(self, data: bytes) -> None:
        # The idle timeout restarts once per read (not per line: `lineReceived` takes
        # ordinary data lines past Twisted's per-line dispatch).
        self.resetTimeout()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        held = self._held
        if held is not None:  # a message is being committed: its answer comes first
            held.append(line)
            self._bound_held()
            return
        capture = self._capture
        if (capture is not None and line[:1] != b"." and self.datafailed is None
                and b"\r" not in line and b"\n" not in line):
            # An ordinary data line (no dot to unstuff, not the end, no bare CR or LF, nothing
            # failed): what Twisted's DATA state would do, as it does it here (its header
            # repair is off, see `dataLineReceived`; the other recipients' `Ignored` drop it),
            # without five calls per line.
            self._data_bytes += len(line) + 2
            if self._data_bytes <= self.edge.settings.max_message_bytes:
                capture.lines.append(line)
                return
            self._data_bytes -= len(line) + 2  # over the size: counted and refused below
        super().lineReceived(line)

    def _hold(self) -> None:
        """From the final `.` until the message's answer is sent, later lines (a pipelined QUIT,
        RFC 2920, as Postfix's client sends it) wait: else Twisted answers QUIT and closes
        before the 250 of a message we did take, and the sender would send it again. Once
        HOLD_LINES wait, the socket is not read either (a client that sends on cannot make us
        buffer more); the usual few wait without a pause (a pause and a resume cost two
        `epoll_ctl` calls and the reactor's bookkeeping per message)."""
        self._held = []

    def _bound_held(self) -> None:
        if not self._paused and len(self._held or ()) >= HOLD_LINES:
            self._paused = True
            self.transport.pauseProducing()

    def _release(self) -> None:
        held, self._held = self._held or [], None
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        for i, line in enumerate(held):
            if self._held is not None:  # the next message is being committed: wait again
                self._held.extend(held[i:])
                self._bound_held()
                return
            self.lineReceived(line)

    def dataLineReceived(self, line: bytes) -> None:
        if line == b".":
            self._capture = None
            if self.datafailed is None and getattr(self, "_SMTP__messages", None):
                self._hold()
        if line != b".":
            if (b"\r" in line or b"\n" in line) and b"." in BARE_BREAK.split(line):
                self.datafailed = e.data_error(e.BAD_LINE_ENDING)  # wins over size
                self._drop_messages()
            elif self.datafailed is None:
                # Text lines over 1000 octets are accepted (real clients send them, Postfix
                # takes them): only the message size bounds them.
                self._data_bytes += len(line) + 2
                if self._data_bytes > self.edge.settings.max_message_bytes:
                    self.datafailed = e.data_error(e.MESSAGE_TOO_BIG)
                    self._drop_messages()
        # Twisted puts a blank line after its Received field when the client's first line has
        # no colon (" ", a stray word): every header of the client would become body. We keep
        # the bytes as sent; parse.py repairs what needs it.
        self._SMTP__inheader = 1
        super().dataLineReceived(line)

    state_DATA = dataLineReceived

    def _drop_messages(self) -> None:
        for message in getattr(self, "_SMTP__messages", ()):
            message.connectionLost()

    def _messageHandled(self, resultList: list) -> None:
        try:
            self._answer_message(resultList)
        finally:
            if self._held is not None:
                self._release()

    def _answer_message(self, resultList: list) -> None:
        for ok, result in resultList:
            if not ok:
                if result.check(smtp.SMTPServerError):
                    resp = result.value.resp
                    self.sendCode(result.value.code,
                                  resp.encode() if isinstance(resp, str) else resp)
                else:
                    log.error("could not store a message: %s", result.getTraceback())
                    self.sendCode(*e.TEMPORARY_FAILURE)
                return
        if any(ok and r is HELD for ok, r in resultList):
            self.sendCode(*e.OK_HELD)
            return
        request = next((r.request for ok, r in resultList if ok and r is not None), "")
        code, text = e.OK_STORED
        self.sendCode(code, text.replace(b"{request}", request.encode("ascii", "replace")))


class SmtpIntake(ServerFactory):
    """The SMTP server factory of the e-mail edge."""

    def __init__(self, mail: Mail | None, settings: EmailSettings, routes: Routes | None = None,
                 context_factory: Any = None, reader: Reader | Inline | None = None) -> None:
        self.mail = mail
        self.reader = reader  # the edge's (plugin.py); made on first use when built alone
        self.settings = settings
        self.routes = routes or Routes.from_settings(settings)
        self.hostname = settings.hostname
        self.context_factory = context_factory
        self.authenticity = Authenticity.from_settings(settings)  # sender checks (issue 13)

    def buildProtocol(self, addr: Any) -> IntakeESMTP:
        p = IntakeESMTP(self, self.context_factory)
        p.factory = self
        return p

    def _reader(self) -> Reader | Inline:
        reader = self.reader
        if reader is None:
            from twisted.internet import reactor

            s = self.settings
            reader = self.reader = Reader(
                reactor, limits_from(s), workers=s.parse_workers,
                budget=s.parse_budget_seconds, wait=s.parse_wait_seconds,
                memory_mb=s.parse_memory_mb)
        return reader

    def deliver(self, raw: bytes, queue: str, envelope_from: str,
                recipients: tuple[str, ...], verdict: Verdict | None = None,
                source: str | None = None) -> defer.Deferred:
        """Read the message off the reactor (reading.py: worker processes, time budget), then
        store it; the Deferred fires after the commit (or fails: 451). `source`: the
        message's source key (held mail's, held.py), which the store keeps once."""
        if self.mail is None:
            raise RuntimeError("this SMTP intake stores no mail (built without Mail)")
        try:
            d = self._reader().read(raw, queue, envelope_from, recipients,
                                    attachments_dir=self.settings.attachments_dir,
                                    verdict=verdict, source=source)
        except Exception:
            log.exception("could not read a message")
            return defer.fail(e.server_error(e.TEMPORARY_FAILURE))
        return d.addCallback(self.mail.receive)
