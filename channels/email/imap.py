"""IMAP polling of a mailbox the company already has: every unseen message becomes a task (or
joins one) exactly as an SMTP one does, through `Mail.receive`.

One session: connect (twisted.mail.imap4; Twisted switches to TLS by itself when the server
offers STARTTLS), LOGIN, SELECT the mailbox, read its UIDVALIDITY, then repeat: `UID SEARCH
UNSEEN`; for each UID, in order, the source key `imap:<user>@<host>/<mailbox>/<uidvalidity>/<uid>`
is looked up in the store (`known_mail_sources`). An unknown message is fetched with
`BODY.PEEK[]` (which sets no flag), translated and received; only after `Mail.receive` has fired
(the task is committed) is it marked `\\Seen` (and moved to `imap_move_to` when that is set and
the server offers MOVE). A known message is a commit whose mark was lost (a crash or a dropped
connection in between): it is only marked. So a restart at any point loses nothing and stores
nothing twice. The store refuses a second message with the same source, so two pollers racing on
one mailbox cannot duplicate either.

Between searches the session waits in IDLE when the server lists it (and `imap_idle` is on): a
new message (`* n EXISTS`) ends the IDLE at once; otherwise each IDLE lasts at most
`imap_interval` seconds (capped at 25 minutes, inside the 29 minutes of RFC 2177), which also
picks up messages marked unseen again by someone else. Without IDLE it sleeps `imap_interval`.

Documented behaviour:
- What is selected is "unseen", not "above a UID": a message someone reads (marks seen) in the
  mailbox before the poller reaches it is left alone, and existing read mail is not imported at
  the first start.
- A new UIDVALIDITY (the mailbox was recreated, or the server renumbered it) gives new source
  keys: its unseen messages are taken as new. Messages that were committed but not yet marked
  under the old UIDVALIDITY would then be stored again; that needs a crash and a renumbering at
  the same moment.
- With `imap_move_to`, the message is marked seen and then moved; a crash between the two leaves
  it seen in the mailbox (already a task; nothing lost or doubled).
- A message that cannot be stored now (database down, unknown queue) stays unseen and is tried
  again at the next search; a malformed one is stored flagged, as over SMTP. A bad server reply
  or a lost connection ends the session; the poller reconnects with exponential backoff
  (1 s doubling to 5 min; back to 1 s once a session has reached SELECT).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from typing import Any

from twisted.internet import defer, protocol, task
from twisted.mail import imap4
from twisted.python.failure import Failure

from dispatcher.service.mail import Mail

from .authenticity import mailbox_verdict
from .config import EmailSettings
from .reading import Inline, Reader

log = logging.getLogger(__name__)

IDLE_LIMIT = 25 * 60.0  # RFC 2177: servers may drop an IDLE after 29 minutes
COMMAND_TIMEOUT = 120.0  # no byte from the server for this long during a command: drop it
CONNECT_TIMEOUT = 30.0
BACKOFF_MIN = 1.0
BACKOFF_MAX = 300.0
SEEN = "\\Seen"


def quote_mailbox(name: str) -> bytes:
    """A mailbox name as an IMAP astring (modified UTF-7, always quoted)."""
    encoded = name.encode("imap4-utf-7")  # the codec twisted.mail.imap4 registers
    return b'"' + encoded.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def body_of(response: dict, uid: int) -> bytes | None:
    """The message bytes in a `UID FETCH uid BODY.PEEK[]` reply, or None (expunged meanwhile).
    Twisted hands literals over decoded with `charmap`: encoding back gives the exact bytes."""
    for items in response.values():
        if not items:
            continue
        fields = items[0]
        pairs = {}
        i = 0
        while i + 1 < len(fields):
            key = fields[i]
            if key == "BODY" and i + 2 < len(fields) and isinstance(fields[i + 1], list):
                pairs["BODY"] = fields[i + 2]
                i += 3
                continue
            pairs[key] = fields[i + 1]
            i += 2
        if str(pairs.get("UID")) == str(uid) and isinstance(pairs.get("BODY"), str):
            return pairs["BODY"].encode("charmap")
    return None


class ImapClient(imap4.IMAP4Client):
    """IMAP4Client with the server greeting as a Deferred and IDLE (RFC 2177)."""

    timeout = COMMAND_TIMEOUT

    def __init__(self) -> None:
        super().__init__()
        self.greeted: defer.Deferred = defer.Deferred()
        self.clock: Any = None  # the reactor, set by the poller after connecting
        self.broken: Exception | None = None
        self.arrived = False  # an EXISTS came with some reply: search again before IDLE
        self._idle: str | None = None  # None | "starting" | "idling" | "done"
        self._done_wanted = False

    def serverGreeting(self, caps: Any) -> None:
        if not self.greeted.called:
            self.greeted.callback(caps)

    def lineReceived(self, line: bytes) -> None:
        """A line Twisted cannot parse ends the connection; the session fails with it."""
        try:
            super().lineReceived(line)
        except Exception as exc:  # noqa: BLE001 - IllegalServerResponse and friends
            if self.broken is None:
                self.broken = exc
            self.transport.abortConnection()

    def connectionLost(self, reason: Any) -> None:
        if self.broken is not None:
            reason = Failure(self.broken)
        super().connectionLost(reason)
        if not self.greeted.called:
            self.greeted.errback(reason)

    def quiet(self) -> None:
        """No command for a while (sleeping between polls): no read timeout meanwhile."""
        self.setTimeout(None)

    def busy(self) -> None:
        self.setTimeout(COMMAND_TIMEOUT)

    def idle(self, limit: float) -> defer.Deferred:
        """IDLE until a new message arrives, `end_idle()` is called, or `limit` seconds pass;
        fires when the server has answered the DONE."""
        self._idle, self._done_wanted = "starting", False
        self.setTimeout(limit + COMMAND_TIMEOUT)
        d = self.sendCommand(imap4.Command(b"IDLE", continuation=self._idling))
        call = self.clock.callLater(limit, self.end_idle)

        def over(result: Any) -> Any:
            self._idle = None
            if call.active():
                call.cancel()
            self.busy()
            return result

        return d.addBoth(over)

    def _idling(self, rest: bytes) -> None:
        self._idle = "idling"
        if self._done_wanted:
            self._send_done()

    def end_idle(self) -> None:
        if self._idle == "idling":
            self._send_done()
        elif self._idle == "starting":
            self._done_wanted = True

    def _send_done(self) -> None:
        self._idle = "done"
        self.sendLine(b"DONE")

    def _defaultHandler(self, tag: bytes, rest: bytes) -> None:
        if tag == b"*":
            words = rest.split(None, 2)
            if len(words) >= 2 and words[1].upper() == b"EXISTS":
                self.arrived = True  # with whatever reply it came (Twisted hides it there)
                self.end_idle()
        super()._defaultHandler(tag, rest)


class _Stopped(Exception):
    pass


class ImapPoller:
    """Polls one mailbox for the e-mail edge; `start()`, then `stop()` (returns a Deferred)."""

    def __init__(self, reactor: Any, mail: Mail, settings: EmailSettings,
                 reader: Reader | Inline | None = None) -> None:
        self.reactor = reactor
        self.mail = mail
        self.settings = settings
        # Reads each message off the reactor within the parse budget (the SMTP intake's own
        # Reader when the edge runs; in process, bounded, for a poller built alone).
        self.reader = reader if reader is not None else Inline()
        self.account = f"{settings.imap_user}@{settings.imap_host}"
        self.client: ImapClient | None = None
        self._stopping = False
        self._running: defer.Deferred | None = None
        self._sleep: defer.Deferred | None = None
        self._selected = False  # the current session got as far as SELECT

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._stopping = False
        self._running = defer.ensureDeferred(self._run())

    def stop(self) -> defer.Deferred:
        """End the session (a message being stored is finished first, its mark may be lost:
        the next start marks it)."""
        self._stopping = True
        if self._sleep is not None and not self._sleep.called:
            self._sleep.cancel()
        if self.client is not None:
            self.client.end_idle()
            if self.client.transport is not None:
                self.client.transport.loseConnection()
        return self._running if self._running is not None else defer.succeed(None)

    async def _wait(self, seconds: float) -> None:
        """Sleep; `stop()` cuts it short."""
        self._sleep = task.deferLater(self.reactor, seconds, lambda: None)
        try:
            await self._sleep
        except defer.CancelledError:
            pass
        finally:
            self._sleep = None

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while not self._stopping:
            self._selected = False
            try:
                await self._session()
            except _Stopped:
                break
            except Exception as exc:  # noqa: BLE001 - any failure: log, back off, reconnect
                if self._stopping:
                    break
                if self._selected:
                    delay = BACKOFF_MIN  # the session worked: a fresh failure, a short wait
                log.warning("e-mail: IMAP %s (%s): %s: %s; again in %.0f s", self.account,
                            self.settings.imap_mailbox, type(exc).__name__, exc, delay)
                await self._wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
            finally:
                client, self.client = self.client, None
                if client is not None and client.transport is not None:
                    client.transport.loseConnection()

    # ------------------------------------------------------------------ one session

    def _check(self) -> None:
        if self._stopping:
            raise _Stopped()

    async def _session(self) -> None:
        s = self.settings
        creator = protocol.ClientCreator(self.reactor, ImapClient)
        client = await creator.connectTCP(s.imap_host, s.imap_port, timeout=CONNECT_TIMEOUT)
        client.clock = self.reactor
        self.client = client
        self._check()
        await client.greeted
        await client.login(s.imap_user.encode(), s.imap_password.encode())
        caps = await client.getCapabilities(useCache=0)
        self._check()
        if s.imap_move_to:
            # it exists (or cannot be made: the MOVE will say so)
            with contextlib.suppress(imap4.IMAP4Exception):
                await client.create(s.imap_move_to)
        selected = await client.select(s.imap_mailbox)
        validity = selected.get("UIDVALIDITY")
        if not isinstance(validity, int):
            raise imap4.IllegalServerResponse(f"SELECT gave no UIDVALIDITY: {selected!r}")
        prefix = f"imap:{self.account}/{s.imap_mailbox}/{validity}/"
        can_move = b"MOVE" in caps
        if s.imap_move_to and not can_move:
            log.warning("e-mail: IMAP server has no MOVE: messages are only marked seen")
        use_idle = s.imap_idle and b"IDLE" in caps
        self._selected = True
        log.info("e-mail: IMAP %s/%s selected (UIDVALIDITY %d, %s)", self.account,
                 s.imap_mailbox, validity, "IDLE" if use_idle else f"every {s.imap_interval} s")
        while True:
            self._check()
            client.arrived = False
            await self._drain(client, prefix, can_move)
            self._check()
            if client.arrived:
                continue  # mail came in while we worked: the IDLE would not announce it
            if use_idle:
                await client.idle(min(s.imap_interval, IDLE_LIMIT))
            else:
                client.quiet()
                await self._wait(s.imap_interval)
                client.busy()

    async def _drain(self, client: ImapClient, prefix: str, can_move: bool) -> None:
        uids = sorted(set(await client.search("UNSEEN", uid=True)))
        if not uids:
            return
        known = await self.mail.store.known_mail_sources([f"{prefix}{u}" for u in uids])
        for uid in uids:
            self._check()
            source = f"{prefix}{uid}"
            if source not in known:
                raw = body_of(await client.fetchSpecific(str(uid), uid=True, peek=True), uid)
                if raw is None:
                    continue  # expunged meanwhile
                try:
                    await self._receive(raw, source)
                except Exception as exc:  # noqa: BLE001 - stays unseen: tried again later
                    log.warning("e-mail: could not store IMAP message %s: %s: %s", source,
                                type(exc).__name__, exc)
                    continue
                self._check()
            await self._mark(client, uid, can_move)

    async def _receive(self, raw: bytes, source: str) -> None:
        message = await self.reader.read(
            raw, self.settings.imap_queue, "", (), source=source,
            attachments_dir=self.settings.attachments_dir,
            verdict=mailbox_verdict(raw, self.settings.imap_trust_authentication_results,
                                    self.settings.auth_serv_id))
        # A mailbox has no envelope: the header's sender and recipients stand for it.
        message = replace(message, envelope_from=message.from_address or "",
                          recipients=message.to_addrs + message.cc_addrs)
        await self.mail.receive(message)

    async def _mark(self, client: ImapClient, uid: int, can_move: bool) -> None:
        await client.addFlags(str(uid), [SEEN], uid=True)
        if self.settings.imap_move_to and can_move:
            await client.sendCommand(imap4.Command(
                b"UID MOVE", str(uid).encode() + b" " + quote_mailbox(self.settings.imap_move_to)))


