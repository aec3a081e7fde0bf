"""The e-mail edge as the runtime loads it: `EDGE` (entry point `switchboard.edges: email`).

`build(context, settings)` needs `context.mail`, the `dispatcher.service.mail.Mail` the runtime
builds; it sets the channel's policy on it and returns the edge: SMTP intake, the outbound
relay, and (when `imap_host` is set) IMAP polling of a mailbox, started and stopped together.
With `context.codification` it registers the spamd scorer (`spamd_host`, spam.py); with a site
root it hangs the web form on `/forms/contact` (form.py).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from twisted.internet import defer

from dispatcher.service.edges import EdgeContext, EdgeSpec

from .config import EmailSettings, Routes, check_imap, policy_from
from .form import forms_resource, parse_types
from .imap import ImapPoller
from .outbound import Relay
from .smtp import SmtpIntake
from .spam import SpamdClient

log = logging.getLogger(__name__)


def tls_context(settings: EmailSettings) -> Any:
    if not (settings.tls_cert and settings.tls_key):
        return None
    from twisted.internet import ssl

    return ssl.DefaultOpenSSLContextFactory(settings.tls_key, settings.tls_cert)


class EmailEdge:
    def __init__(self, reactor: Any, mail: Any, settings: EmailSettings) -> None:
        self.reactor = reactor
        self.mail = mail
        self.settings = settings
        self.intake = SmtpIntake(mail, settings, Routes.from_settings(settings),
                                 tls_context(settings))
        self.relay = Relay(reactor, mail, settings)
        self.imap = ImapPoller(reactor, mail, settings) if settings.imap_host else None
        self.port: Any = None

    def start(self) -> None:
        s = self.settings
        self.port = self.reactor.listenTCP(s.smtp_port, self.intake, interface=s.smtp_host)
        log.info("e-mail: SMTP on %s:%d", s.smtp_host, self.port.getHost().port)
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
        waits = [defer.maybeDeferred(self.port.stopListening)] if self.port else []
        if self.imap is not None:
            waits.append(self.imap.stop())
        return defer.DeferredList(waits)


def build(context: EdgeContext, settings: EmailSettings) -> EmailEdge:
    if context.mail is None:
        raise RuntimeError("the e-mail edge needs EdgeContext.mail (dispatcher.service.mail.Mail)")
    Routes.from_settings(settings)  # refuse bad recipient routes at start
    check_imap(settings)
    context.mail.configure(policy_from(settings))
    _codification(context, settings)
    return EmailEdge(context.reactor, context.mail, settings)


def _codification(context: EdgeContext, settings: EmailSettings) -> None:
    """Spam scoring (spam.py) and the web form (form.py), when the runtime has them."""
    codification = getattr(context, "codification", None)
    if codification is not None:
        scorer = SpamdClient(context.reactor, settings.spamd_host, settings.spamd_port,
                             settings.spamd_timeout, settings.spamd_max_bytes
                             ) if settings.spamd_host else None
        codification.set_scorer(scorer.check if scorer else None)
        codification.configure(replace(codification.policy, spam_queue=settings.spam_queue))
    parse_types(settings.form_types)  # refuse a bad mapping at start
    queue = settings.form_queue.strip() or settings.default_queue.strip()
    if settings.form_enabled and context.site_root is not None:
        if not queue:
            log.warning("e-mail: no web form (set email.form_queue or email.default_queue)")
            return
        context.site_root.putChild(b"forms", forms_resource(context.mail, settings, queue))
        log.info("e-mail: web form at /forms/contact (queue %s)", queue)


EDGE = EdgeSpec(name="email", settings=EmailSettings, build=build)
