"""Held mail, the e-mail edge's part of several nodes: SMTP on a node that does not route holds
what it accepts, and the router's e-mail edge takes it in.

- `HoldingSmtp` is the SMTP intake of a standby or edge node: the same protocol, limits,
  recipient routes and sender checks as smtp.py's, but `deliver` commits the raw message, its
  envelope and the checks' verdict as held mail (dispatcher/service/held.py) and answers 250
  only after that commit (451 when it fails: the sender retries). It does not parse: the router
  reads the message as it reads its own SMTP's.
- `TakeIn` runs on the router's e-mail edge: every POLL_SECONDS (at once again while a full
  batch came back) it takes the oldest held messages in through `SmtpIntake.deliver` with the
  source key `held:<id>`: each sender's one after another (a customer's reply held after their
  first message is stored after it), different senders' side by side, as separate SMTP
  connections are; one already stored (a router that died before forgetting it) is only
  forgotten.
  One that fails waits and is retried (held.py); nothing is forgotten before it is stored.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import LoopingCall

from dispatcher.guard import Outage
from dispatcher.service.edges import StandbyContext
from dispatcher.service.held import Held, source_of
from dispatcher.service.mail import Mail
from dispatcher.service.ports import EdgeReactor, HeldMail

from . import errors as e
from .authenticity import Verdict
from .config import EmailSettings, Routes
from .smtp import HELD, SmtpIntake

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
BATCH = 50


class HoldingSmtp(SmtpIntake):
    """SMTP intake that holds each message for the router (module doc)."""

    def __init__(self, held: Held, settings: EmailSettings, routes: Routes | None = None,
                 context_factory: Any = None) -> None:
        super().__init__(None, settings, routes, context_factory)
        self.held = held

    def deliver(self, raw: bytes, queue: str, envelope_from: str,
                recipients: tuple[str, ...], verdict: Verdict | None = None,
                source: str | None = None) -> defer.Deferred:
        d = self.held.hold(raw, queue, envelope_from, recipients,
                           dataclasses.asdict(verdict) if verdict is not None else None)

        def failed(failure: Any) -> None:
            log.warning("e-mail: could not hold a message: %s", failure.getErrorMessage())
            raise e.server_error(e.TEMPORARY_FAILURE)

        return d.addCallbacks(lambda _: HELD, failed)  # 250 names no request number yet


class TakeIn:
    """The router's side: held mail taken in as if its own SMTP had received it."""

    def __init__(self, reactor: EdgeReactor, held: Held, intake: SmtpIntake, mail: Mail,
                 poll: float = POLL_SECONDS, batch: int = BATCH) -> None:
        self.reactor = reactor
        self.held = held
        self.intake = intake
        self.mail = mail
        self.poll = poll
        self.batch = batch
        self.taken = 0  # messages stored by this process (for the tests)
        self._loop: LoopingCall | None = None
        self._outage = Outage(log)  # rounds failing: said once until one works

    def start(self) -> None:
        self._loop = LoopingCall(lambda: ensureDeferred(self._rounds()))
        self._loop.clock = self.reactor
        self._loop.start(self.poll, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    async def _rounds(self) -> None:
        try:
            while await self._round() == self.batch and self._loop is not None:
                pass
        except Exception as exc:  # noqa: BLE001 - the database away: said once, retried
            self._outage.failed("e-mail: cannot take held mail in now (retrying every %.1f s): "
                                "%s", self.poll, str(exc).splitlines()[0] if str(exc) else exc)
            return
        self._outage.worked("e-mail: taking held mail in again")

    async def _round(self) -> int:
        items = await self.held.waiting(self.batch)
        if not items:
            return 0
        known = await self.mail.store.known_mail_sources([source_of(m.id) for m in items])
        done = [m.id for m in items if source_of(m.id) in known]
        by_sender: dict[str, list[HeldMail]] = {}
        for item in items:
            if source_of(item.id) not in known:
                by_sender.setdefault(item.envelope_from.lower(), []).append(item)
        for taken in await defer.gatherResults(
                [ensureDeferred(self._take_in_order(mails)) for mails in by_sender.values()]):
            done.extend(taken)
        await self.held.taken(done)
        self.taken += len(done)
        return len(items)

    async def _take_in_order(self, mails: list[HeldMail]) -> list[str]:
        """One sender's messages, one after another; the ids stored."""
        return [item.id for item in mails if await self._take(item)]

    async def _take(self, item: HeldMail) -> bool:
        verdict = Verdict(**item.verdict) if item.verdict is not None else None
        try:
            await self.intake.deliver(item.raw, item.queue, item.envelope_from,
                                      item.recipients, verdict=verdict,
                                      source=source_of(item.id))
        except Exception as exc:  # noqa: BLE001 - whatever failed, it is retried, never lost
            source = source_of(item.id)
            if source in await self.mail.store.known_mail_sources([source]):
                return True  # stored after all (the store refuses a source twice)
            log.warning("e-mail: held message %s (from node %s) not taken in yet, attempt %d: "
                        "%s", item.id, item.node, item.attempts + 1, exc)
            await self.held.retry_later(item, str(exc) or type(exc).__name__)
            return False
        return True


class StandbyEmailEdge:
    """The e-mail edge of a node that does not route: SMTP holding mail, nothing else (no
    relay, no IMAP: the router's node runs those)."""

    def __init__(self, reactor: EdgeReactor, held: Held, settings: EmailSettings,
                 context_factory: Any = None) -> None:
        self.reactor = reactor
        self.settings = settings
        self.intake = HoldingSmtp(held, settings, Routes.from_settings(settings),
                                  context_factory)
        self.port: Any = None
        self.factory: Any = None

    def start(self) -> None:
        from .plugin import listen_smtp  # the one way SMTP listens, with its guards

        self.port, self.factory = listen_smtp(self.reactor, self.intake, self.settings)
        log.info("e-mail: SMTP on %s:%d holding mail for the router", self.settings.smtp_host,
                 self.port.getHost().port)

    def stop(self) -> defer.Deferred:
        if self.port is None:
            return defer.succeed(None)
        self.factory.gate.unwatch(self.port)
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening)


def build_standby(context: StandbyContext, settings: EmailSettings) -> StandbyEmailEdge:
    from .plugin import tls_context

    Routes.from_settings(settings)  # refuse bad recipient routes at start
    return StandbyEmailEdge(context.reactor, context.held, settings, tls_context(settings))
