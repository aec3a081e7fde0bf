"""SIP on a node that does not route: a redirect server (RFC 3261 §8.3) in front of the leader.

A call's dialog, the registrar's bindings and the queue's callers live in the router's
process (control.py, registrar.py), so a standby or edge node holds none of them: its SIP
ports answer every request with `302 Moved Temporarily` and a `Contact` on the leader's SIP
address, with the Request-URI's user kept (a queue address, an extension) and the transport
the request came over. Phones, trunks and PBXs that follow redirects (RFC 3261 §8.1.3.4) then
send the INVITE or REGISTER to the leader; while no leader is known (a takeover), `503` with
`Retry-After: 5`, which makes a client try the next server of its DNS SRV set (RFC 3263 §4.3).

The transaction layer (sip.py `Endpoint`) stays the one for every node: retransmissions are
absorbed, an ACK of the 302 ends the INVITE's transaction, a CANCEL before the answer gets 487.
The leader's address comes from the cluster's address book (dispatcher/service/nodes.py), at
most one read a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred

from dispatcher.service.nodes import SIP, SIP_TCP

from . import errors
from .control import new_tag
from .parse import Request, Response
from .sip import Flow, ServerTransaction

log = logging.getLogger(__name__)

RETRY_AFTER = "5"
SCHEME = "sip"  # the published endpoints: sip://host:port (service/nodes.py)


def contact(target: str, request: Request, flow: Flow) -> str | None:
    """The leader's Contact for `request`: `<sip:user@host:port>`, `;transport=tcp` when the
    request came over TCP; None when `target` is not a sip://host:port."""
    parts = urlsplit(target)
    if parts.scheme != SCHEME or not parts.hostname or not parts.port:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    user = request.request_uri.user
    transport = ";transport=tcp" if flow.reliable else ""
    return f"<sip:{user + '@' if user else ''}{host}:{parts.port}{transport}>"


class Redirect:
    """The transaction user of the SIP endpoint on a node that does not route (module doc).
    `leader(kind)` gives the leader's published SIP endpoint of that kind (`sip` over UDP,
    `sip_tcp`: `sip://host:port`) or None."""

    def __init__(self, leader: Callable[[str], Deferred[str | None]]) -> None:
        self._leader = leader
        self.redirected = 0  # requests answered 302

    def request(self, txn: ServerTransaction) -> None:
        d = self._leader(SIP_TCP if txn.flow.reliable else SIP)
        d.addCallback(self._answer, txn)
        d.addErrback(self._unavailable, txn)

    def _answer(self, target: str | None, txn: ServerTransaction) -> None:
        if txn.final:  # a CANCEL came first
            return
        where = contact(target, txn.request, txn.flow) if target else None
        if where is None:
            txn.reply(errors.SERVICE_UNAVAILABLE, to_tag=new_tag(),
                      headers=[("Retry-After", RETRY_AFTER)])
            return
        self.redirected += 1
        txn.reply(errors.MOVED_TEMPORARILY, to_tag=new_tag(), headers=[("Contact", where)])

    def _unavailable(self, failure: Any, txn: ServerTransaction) -> None:
        log.warning("sip redirect: the leader's address could not be read: %s",
                    failure.getErrorMessage())
        self._answer(None, txn)

    def ack(self, request: Request, flow: Flow) -> None:
        """An ACK outside a transaction (for a 2xx): this node sends none."""

    def cancel(self, invite: ServerTransaction, cancel: Request) -> None:
        if not invite.final:
            invite.reply(errors.REQUEST_TERMINATED, to_tag=new_tag())

    def stray_response(self, response: Response, flow: Flow) -> None:
        log.debug("response %d matching no transaction from %s dropped", response.status, flow)
