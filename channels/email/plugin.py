"""The e-mail edge as the runtime loads it: `EDGE` (entry point `switchboard.edges: email`).

`build(context, settings)` needs `context.mail`, the `dispatcher.service.mail.Mail` the runtime
builds; it sets the channel's policy on it and returns the edge: SMTP intake, the outbound
relay, and (when `imap_host` is set) IMAP polling of a mailbox, started and stopped together.
With `context.codification` it registers the spamd scorer (`spamd_host`, spam.py); on the site
root it hangs the web form on `/forms/contact` (form.py, when `form_enabled`), its body capped
at `form_max_bytes` before it is read (the site's `max_body_bytes` attribute,
dispatcher/runtime/http.py), and, with `context.answers`, the public knowledge-base page on
`/help` (help.py): the customer-facing pages live together here. The services are read from
the context by name (typed fields) and handed to the edge's parts as constructor arguments.

The SMTP port is behind the process's connection gate (dispatcher/net.py: concurrent sessions
per source address, the global budget) and a per-source rate of new sessions
(`smtp_sessions_per_ip_per_minute`, guard.Budget; the relays in `auth_trusted_relays` are not
counted): both refuse with `421 4.7.0` and close.

With several nodes (held.py): `EDGE.standby` is the SMTP of a node that does not route, which
holds the mail it accepts in the database; with `context.held`, the router's edge takes that
mail in as if its own SMTP had received it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import ServerFactory
from twisted.web.resource import Resource

from dispatcher import net
from dispatcher.guard import Budget, Throttled
from dispatcher.service.codification import Codification
from dispatcher.service.edges import EdgeContext, EdgeSpec
from dispatcher.service.held import Held
from dispatcher.service.mail import Mail
from dispatcher.service.ports import EdgeReactor

from . import help as help_page
from .authenticity import is_trusted
from .config import EmailSettings, Routes, check_imap, limits_from, policy_from
from .form import _wants_json, answer_page, forms_resource, parse_types
from .held import TakeIn, build_standby
from .imap import ImapPoller
from .outbound import Relay
from .reading import Reader
from .smtp import SmtpIntake
from .spam import SpamdClient

log = logging.getLogger(__name__)


def tls_context(settings: EmailSettings) -> Any:
    if not (settings.tls_cert and settings.tls_key):
        return None
    from twisted.internet import ssl

    return ssl.DefaultOpenSSLContextFactory(settings.tls_key, settings.tls_cert)


def busy_reply(hostname: str) -> bytes:
    return (f"421 4.7.0 {hostname} too many connections from your address, try again later"
            "\r\n").encode("ascii", "replace")


class SessionRate(ServerFactory):
    """The SMTP intake behind a token bucket of new sessions per source address; `exempt(host)`
    names the sources it does not count (the relays we trust: an MX hands over all mail from
    one address)."""

    def __init__(self, intake: SmtpIntake, per_minute: int, clock: EdgeReactor, refusal: bytes,
                 exempt: Callable[[str], bool] = lambda host: False) -> None:
        self.intake = intake
        self.exempt = exempt
        self.per_minute = per_minute
        self.clock = clock
        self.refusal = refusal
        self.budget = Budget(per_minute / 60.0, per_minute) if per_minute > 0 else None
        self.refusals = Throttled(log)

    def doStart(self) -> None:  # noqa: N802 - Twisted API
        self.intake.doStart()

    def doStop(self) -> None:  # noqa: N802 - Twisted API
        self.intake.doStop()

    def buildProtocol(self, addr: Any) -> Any:
        host = net.peer_host(addr)
        now = self.clock.seconds()
        if self.budget is None or self.exempt(host) or self.budget.take(host, now):
            return self.intake.buildProtocol(addr)
        self.refusals.warning(host, now, "e-mail: refused an SMTP session from %s: more than %d"
                              " a minute", host, self.per_minute)
        return net.Refusal(self.refusal)


def listen_smtp(reactor: EdgeReactor, intake: SmtpIntake, s: EmailSettings) -> tuple[Any, Any]:
    """Listen for SMTP with `intake` behind the connection gate and the per-source session
    rate; returns the port and the guarded factory."""
    refusal = busy_reply(s.hostname)
    factory = net.Guarded(
        SessionRate(intake, s.smtp_sessions_per_ip_per_minute, reactor, refusal,
                    lambda host: is_trusted(host, intake.authenticity.trusted)),
        "smtp", refusal=refusal)
    return net.listen_tcp(reactor, s.smtp_port, factory, s.smtp_host), factory


class EmailEdge:
    def __init__(self, reactor: EdgeReactor, mail: Mail, settings: EmailSettings,
                 held: Held | None = None) -> None:
        self.reactor = reactor
        self.mail = mail
        self.settings = settings
        s = settings
        # One pool of reading workers (reading.py) for SMTP and IMAP: parsing never runs on
        # the reactor, and a message over the budget is still stored.
        self.reader = Reader(reactor, limits_from(s), workers=s.parse_workers,
                             budget=s.parse_budget_seconds, wait=s.parse_wait_seconds,
                             memory_mb=s.parse_memory_mb)
        self.intake = SmtpIntake(mail, settings, Routes.from_settings(settings),
                                 tls_context(settings), reader=self.reader)
        self.relay = Relay(reactor, mail, settings)
        # Mail that nodes which do not route held for us (held.py), taken in as our own.
        self.take_in = TakeIn(reactor, held, self.intake, mail) if held is not None else None
        self.imap = (ImapPoller(reactor, mail, settings, reader=self.reader)
                     if settings.imap_host else None)
        self.port: Any = None
        self.factory: Any = None

    def start(self) -> None:
        s = self.settings
        self.reader.start()  # before the port opens: the first message waits for no worker
        self.port, self.factory = listen_smtp(self.reactor, self.intake, s)
        log.info("e-mail: SMTP on %s:%d", s.smtp_host, self.port.getHost().port)
        if self.take_in is not None:
            self.take_in.start()
        self.relay.start()
        if not s.relay_host:
            log.warning("e-mail: no relay_host is configured: replies and acknowledgements are"
                        " stored but will not leave (set [email] relay_host)")
        if self.imap is not None:
            log.info("e-mail: IMAP polling %s@%s:%d/%s", s.imap_user, s.imap_host, s.imap_port,
                     s.imap_mailbox)
            self.imap.start()

    def stop(self) -> defer.Deferred:
        self.relay.stop()
        if self.take_in is not None:
            self.take_in.stop()
        waits = [defer.maybeDeferred(self.port.stopListening)] if self.port else []
        if self.port is not None:
            self.factory.gate.unwatch(self.port)
        if self.imap is not None:
            waits.append(self.imap.stop())
        done = defer.DeferredList(waits)
        done.addBoth(lambda _: self.reader.stop())
        return done


def build(context: EdgeContext, settings: EmailSettings) -> EmailEdge:
    mail = context.mail
    if mail is None:
        raise RuntimeError("the e-mail edge needs EdgeContext.mail (dispatcher.service.mail.Mail)")
    Routes.from_settings(settings)  # refuse bad recipient routes at start
    limits_from(settings)  # and bad reading limits
    check_imap(settings)
    mail.configure(policy_from(settings))
    if context.codification is not None:
        _spam(context.codification, context.reactor, settings)
    calls = getattr(context, "calls", None)  # an EdgeContext always has it; test stand-ins not
    _form(context.site_root, mail, settings, calls.callbacks if calls is not None else None)
    if context.answers is not None:  # the public knowledge-base page (help.py) on `/help`
        help_page.mount(context.site_root, context.answers.library)
    return EmailEdge(context.reactor, mail, settings, context.held)


def form_too_large(limit: int, request: Any) -> tuple[bytes, bytes]:
    """The form's own 413 (JSON or a page, as its other answers), for the site to send."""
    data = {"error": "too_large", "message": f"at most {limit} bytes"}
    if _wants_json(request):
        return b"application/json", json.dumps(data).encode()
    return b"text/html; charset=utf-8", answer_page(413, data).encode()


def _spam(codification: Codification, reactor: EdgeReactor, settings: EmailSettings) -> None:
    """Spam scoring (spam.py, when `spamd_host` is set) and the spam queue, registered by
    calls on the codification service."""
    scorer = SpamdClient(reactor, settings.spamd_host, settings.spamd_port,
                         settings.spamd_timeout, settings.spamd_max_bytes
                         ) if settings.spamd_host else None
    codification.set_scorer(scorer.check if scorer else None)
    codification.use_spam_queue(settings.spam_queue)


def _form(site_root: Resource, mail: Mail, settings: EmailSettings,
          callbacks: Any = None) -> None:
    """The web form (form.py) on `/forms/contact`, when enabled and given a queue; a call back
    asked there is also a callback task (`callbacks`: dispatcher.service.callbacks)."""
    parse_types(settings.form_types)  # refuse a bad mapping at start
    queue = settings.form_queue.strip() or settings.default_queue.strip()
    if settings.form_enabled:
        if not queue:
            log.warning("e-mail: no web form (set email.form_queue or email.default_queue)")
            return
        forms = forms_resource(mail, settings, queue, callbacks)
        contact = forms.children.get(b"contact")
        if contact is not None:  # refused by the HTTP channel before the body is read
            contact.max_body_bytes = settings.form_max_bytes
            contact.too_large = form_too_large
        site_root.putChild(b"forms", forms)
        log.info("e-mail: web form at /forms/contact (queue %s)", queue)


EDGE = EdgeSpec(name="email", settings=EmailSettings, build=build, standby=build_standby)
