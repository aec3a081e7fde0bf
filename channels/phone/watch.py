"""We as subscriber: the dialog state (RFC 4235) of agents' phones that publish it.

Sits in the phone edge under presence.py: the registrar tells it each committed binding
change (`binding_changed`, through `Registrar.on_binding`), presence.py hands it the NOTIFYs
and hears from it whether a phone shows a call of its own (`PhonePresence.phone_state`).
Promises:
- with `watch_dialogs = "auto"`, a phone whose REGISTER lists `dialog` in Allow-Events gets our
  SUBSCRIBE (Event: dialog, Expires `watch_seconds`) at its registered contact, refreshed
  before it runs out, for as long as that binding lasts; a new contact starts a new
  subscription, an unregistered phone ends it; a phone that refuses it (or challenges us:
  we have no credentials of theirs) is not watched, and said once in the log;
- a NOTIFY counts only inside one of our subscriptions (its Call-ID, our tag as its To tag,
  the phone's tag as its From tag once known); anything else is 481, another package 489,
  a body that is not a safe dialog-info document 400 (dialog_info.parse); older versions are
  acknowledged and ignored; full and partial documents are both understood;
- a confirmed, early or starting dialog whose Call-ID is not one of the calls we proxied
  (`PhonePresence.is_ours`) makes the phone busy; no such dialog makes it idle; the end of
  the subscription makes its state unknown (neither).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from . import dialog_info as di
from . import errors
from .config import PhoneSettings
from .parse import ParseError, Request, Response, parse_delta
from .sip import Endpoint, Flow, ServerTransaction, Timer

log = logging.getLogger(__name__)

TAG_BYTES = 6
REFRESH_MARGIN = 30.0  # seconds before expiry a refresh goes (or half the time, if longer)
RESUBSCRIBE_REASONS = ("deactivated", "timeout")  # RFC 6665: the subscriber may retry at once


@dataclass(eq=False)
class Watched:
    """Our subscription to one agent's phone."""

    agent_id: str
    contact: str
    aor: str
    flow: Flow
    call_id: str
    our_tag: str
    their_tag: str | None = None
    cseq: int = 0
    established: bool = False
    version: int | None = None
    dialogs: dict[str, di.Dialog] = field(default_factory=dict)
    timer: Timer | None = None
    over: bool = False


class Watch:
    def __init__(self, presence: Any, settings: PhoneSettings) -> None:
        self.presence = presence
        self.settings = settings
        self.endpoint: Endpoint | None = None
        self.by_agent: dict[str, Watched] = {}
        self.by_call_id: dict[str, Watched] = {}

    def attach(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    # ================================================================ bindings

    def binding_changed(self, agent_id: str, binding: Any, request: Request) -> None:
        if self.settings.watch_dialogs == "off" or self.endpoint is None:
            return
        current = self.by_agent.get(agent_id)
        if binding is None:
            if current is not None:
                self._forget(current, "the phone unregistered")
            return
        try:
            publishes = di.EVENT in (v.split(";")[0].strip().lower()
                                     for v in request.values("allow-events"))
            aor = request.to.uri.text
        except ParseError:
            return
        if current is not None and current.contact == binding.contact and publishes:
            return  # a refreshed registration: our subscription goes on
        if current is not None:
            self._forget(current, "the phone registered again")
        if not publishes:
            return
        w = Watched(agent_id, binding.contact, aor, self.endpoint.flow_to(binding.source, binding.contact),
                    f"{os.urandom(8).hex()}@switchboard", new_tag())
        self.by_agent[agent_id] = w
        self.by_call_id[w.call_id] = w
        log.info("subscribing to the dialog state of %s's phone at %s", agent_id,
                 binding.contact)
        self._subscribe(w, self.settings.watch_seconds)

    # ================================================================ SUBSCRIBE

    def _subscribe(self, w: Watched, expires: int) -> None:
        ep = self.endpoint
        w.cseq += 1
        to = f"<{w.aor}>" + (f";tag={w.their_tag}" if w.their_tag else "")
        headers = [("via", "Via", ep.via(w.flow)), ("max-forwards", "Max-Forwards", "70"),
                   ("from", "From", f"<sip:switchboard@{ep.host}:{ep.udp_port}>;tag={w.our_tag}"),
                   ("to", "To", to), ("call-id", "Call-ID", w.call_id),
                   ("cseq", "CSeq", f"{w.cseq} SUBSCRIBE"),
                   ("contact", "Contact", f"<{self.presence._contact(w.flow)}>"),
                   ("event", "Event", di.EVENT), ("accept", "Accept", di.CONTENT_TYPE),
                   ("expires", "Expires", str(expires)),
                   ("user-agent", "User-Agent", self.settings.user_agent)]
        req = Request(headers, b"", "SUBSCRIBE", w.contact)
        ep.request(req, w.flow, lambda resp: self._answered(w, resp, expires))

    def _answered(self, w: Watched, resp: Response, asked: int) -> None:
        if resp.status < 200 or w.over or asked == 0:
            return
        if resp.status >= 300:
            self._forget(w, f"the phone answered {resp.status} to our SUBSCRIBE")
            return
        try:
            tag = resp.to.tag
            expires = parse_delta(resp.get("expires") or str(asked))
        except ParseError:
            tag, expires = None, asked
        if w.their_tag is None:
            w.their_tag = tag
        w.established = True
        if expires <= 0:
            self._forget(w, "the phone ended the subscription")
            return
        self._arm(w, max(expires / 2, expires - REFRESH_MARGIN))

    def _arm(self, w: Watched, delay: float) -> None:
        if w.timer is not None and w.timer.active():
            w.timer.cancel()
        w.timer = self.endpoint.timers.call_later(delay, self._refresh, w)

    def _refresh(self, w: Watched) -> None:
        if w.over:
            return
        binding = self.presence.calls.binding(w.agent_id)
        if binding is None or binding.contact != w.contact:
            self._forget(w, "its registration is gone")
            return
        self._subscribe(w, self.settings.watch_seconds)

    # ================================================================ NOTIFY

    def notify(self, txn: ServerTransaction) -> None:
        req = txn.request
        try:
            to_tag, from_tag = req.to.tag, req.from_.tag
        except ParseError:
            txn.reply(errors.BAD_REQUEST)
            return
        w = self.by_call_id.get(req.call_id)
        if w is None or w.over or to_tag != w.our_tag or not from_tag \
                or (w.their_tag is not None and from_tag != w.their_tag):
            txn.reply(errors.NO_TRANSACTION)
            return
        event = (req.get("event") or "").split(";")[0].strip().lower()
        if event != di.EVENT:
            txn.reply(errors.BAD_EVENT, headers=[("Allow-Events", di.EVENT)])
            return
        info = None
        ctype = (req.get("content-type") or "").split(";")[0].strip().lower()
        if req.body:
            if ctype != di.CONTENT_TYPE:
                txn.reply(errors.UNSUPPORTED_MEDIA_TYPE, headers=[("Accept", di.CONTENT_TYPE)])
                return
            try:
                info = di.parse(req.body)
            except ValueError as e:
                txn.reply(errors.BAD_REQUEST, f"Bad Request ({errors.warning_text(str(e))})")
                return
        w.their_tag = from_tag
        txn.reply(errors.OK)
        state, _, params = (req.get("subscription-state") or "active").partition(";")
        if info is not None:
            self._learn(w, info)
        if state.strip().lower() == "terminated":
            reason = next((p.split("=", 1)[1].strip().lower() for p in params.split(";")
                           if p.strip().lower().startswith("reason=")), "")
            self._forget(w, f"the phone ended the subscription ({reason or 'no reason'})",
                         again=reason in RESUBSCRIBE_REASONS)

    def _learn(self, w: Watched, info: di.DialogInfo) -> None:
        if w.version is not None and info.version < w.version:
            return  # older than what we know (RFC 4235 §4.1.2)
        w.version = info.version
        if info.state == di.FULL:
            w.dialogs = {}
        for d in info.dialogs:
            if d.active:
                w.dialogs[d.id or d.call_id] = d
            else:
                w.dialogs.pop(d.id or d.call_id, None)
        self.presence.phone_state(w.agent_id, di.active(w.dialogs.values(),
                                                        self.presence.is_ours))

    # ================================================================ the end

    def _forget(self, w: Watched, why: str, again: bool = False) -> None:
        if w.over:
            return
        w.over = True
        if w.timer is not None and w.timer.active():
            w.timer.cancel()
        if self.by_agent.get(w.agent_id) is w:
            del self.by_agent[w.agent_id]
        self.by_call_id.pop(w.call_id, None)
        log.info("dialog state of %s's phone no longer watched: %s", w.agent_id, why)
        self.presence.phone_state(w.agent_id, None)
        binding = self.presence.calls.binding(w.agent_id)
        if again and binding is not None and binding.contact == w.contact:
            fresh = Watched(w.agent_id, w.contact, w.aor, w.flow,
                            f"{os.urandom(8).hex()}@switchboard", new_tag())
            self.by_agent[w.agent_id] = fresh
            self.by_call_id[fresh.call_id] = fresh
            self._subscribe(fresh, self.settings.watch_seconds)

    def stop(self) -> None:
        """Un-SUBSCRIBE every phone we watch (Expires: 0), then forget them."""
        for w in list(self.by_agent.values()):
            if w.established and self.endpoint is not None:
                self._subscribe(w, 0)
            w.over = True
            if w.timer is not None and w.timer.active():
                w.timer.cancel()
        self.by_agent.clear()
        self.by_call_id.clear()


def new_tag() -> str:
    return os.urandom(TAG_BYTES).hex()
