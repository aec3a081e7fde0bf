"""Presence from the phone (issue 18, item 3): the dialog event package as notifier, and what
makes an agent's phone busy for calls.

Sits in the phone edge beside control.py, which hands it SUBSCRIBE and NOTIFY requests and
tells it each state of the agent legs it proxies (`dialog`) and each 486 (`refused_busy`); it
authenticates through registrar.py (`Registrar.authenticate`), subscribes to phones through
watch.py, and reaches the core only through `calls.device(agent_id, engaged=...)`, the path a
PBX's `device.state` takes (the domain's Agent.engaged: no call offered, e-mail offers by the
interruption matrix). Promises:
- SUBSCRIBE (RFC 6665) to an agent's address (their SIP user or extension) with `Event: dialog`
  (RFC 4235) is digest-authenticated like REGISTER (any agent's phone account may watch any
  agent, but the caller's identity goes only to the agent's own phones: a colleague's lamp
  shows busy or idle, never who is calling), answered 200 with Expires within [`subscribe_min`, `subscribe_max`] (423 below),
  then at once a NOTIFY with the full state of the calls we proxy to that agent, one at each
  change (trying, early, confirmed, terminated), `version` counting up per subscription;
  a refresh gets 200 and a NOTIFY; Expires 0 and expiry (on the reactor clock) a last NOTIFY
  `Subscription-State: terminated`; another package is 489, an unknown target 404, an unknown
  dialog 481, beyond `max_subscriptions_per_user` or `max_subscriptions` 503; a NOTIFY that
  fails (481, timeout...) ends the subscription.
- An agent is engaged on the phone while their phone shows a call that is not ours (watch.py)
  or after a 486 from it, until the phone's dialog state says idle or, without one,
  `busy_seconds` later; each change reaches the core once and is logged once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from . import dialog_info as di
from . import errors
from .config import PhoneSettings
from .parse import ParseError, Request, Response, parse_delta, unescape
from .sip import Endpoint, Flow, ServerTransaction, Timer
from .watch import Watch

log = logging.getLogger(__name__)

TAG_BYTES = 6
DIALOG_ID_CHARS = 16
MAX_FORWARDS = "70"
RECENT_CALLS = 4096  # Call-IDs of our legs remembered to tell them from a phone's own calls
TOO_MANY_REASON = "Service Unavailable (too many subscriptions)"
RETRY_AFTER = "60"
MAX_QUEUED_NOTIFIES = 16
ACCEPTED = ("application/dialog-info+xml", "application/*", "*/*")


@dataclass(eq=False)
class Subscription:
    """One dialog-package subscription we serve (we are the notifier)."""

    call_id: str
    our_tag: str
    subscriber: str  # the agent id of the authenticated account
    target: str  # the agent whose calls are published
    entity: str
    flow: Flow
    contact: str  # the subscriber's Contact: our NOTIFYs' Request-URI
    local: str  # the SUBSCRIBE's To (we add our tag)
    remote: str  # the SUBSCRIBE's From, with its tag
    event: str  # the Event header as subscribed (with its id)
    routes: list[str] = field(default_factory=list)
    version: int = 0
    cseq: int = 0
    expires_at: float = 0.0
    timer: Timer | None = None
    over: bool = False
    sending: bool = False  # a NOTIFY in flight
    queue: list[tuple[tuple[di.Dialog, ...], str | None]] = field(default_factory=list)


class PhonePresence:
    def __init__(self, calls: Any, settings: PhoneSettings, registrar: Any) -> None:
        self.calls = calls
        self.settings = settings
        self.registrar = registrar
        self.endpoint: Endpoint | None = None
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self.by_target: dict[str, set[Subscription]] = {}
        self.per_user: dict[str, int] = {}
        self.dialogs: dict[str, dict[str, di.Dialog]] = {}  # agent -> call id -> our leg
        self.ours: OrderedDict[str, None] = OrderedDict()
        self.busy: dict[str, Timer] = {}  # agents whose phone answered 486, until...
        self.phone_active: dict[str, bool] = {}  # agents whose phone publishes a call
        self.reported: dict[str, bool] = {}  # what the core was told
        self.watch = Watch(self, settings)
        registrar.on_binding = self.watch.binding_changed

    def attach(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.watch.attach(endpoint)

    def now(self) -> float:
        return self.endpoint.clock.seconds()

    # ================================================================ requests

    def request(self, txn: ServerTransaction) -> None:
        if txn.request.method == "NOTIFY":
            self.watch.notify(txn)
        else:
            self.subscribe(txn)

    def subscribe(self, txn: ServerTransaction) -> None:  # noqa: C901 - one check per refusal
        req = txn.request
        event = (req.get("event") or "").split(";")[0].strip().lower()
        if event != di.EVENT:
            txn.reply(errors.BAD_EVENT, to_tag=txn.to_tag or new_tag(),
                      headers=[("Allow-Events", di.EVENT)])
            return
        accept = [a.split(";")[0].strip().lower() for a in req.values("accept")]
        if accept and not any(a in ACCEPTED for a in accept):
            txn.reply(errors.NOT_ACCEPTABLE, to_tag=new_tag(), headers=[("Accept", di.CONTENT_TYPE)])
            return
        try:
            expires = parse_delta(req.get("expires") or str(self.settings.subscribe_default))
            their = req.from_
            to_tag = req.to.tag
            contacts = req.contacts()
        except ParseError as e:
            txn.reply(errors.BAD_REQUEST, f"Bad Request ({e.reason})", to_tag=new_tag())
            return
        sub = None
        if to_tag:
            sub = self.subscriptions.get((req.call_id, to_tag))
            if sub is None or sub.over:
                txn.reply(errors.NO_TRANSACTION)
                return
        txn.to_tag = to_tag or new_tag()
        account = self.registrar.authenticate(txn, unescape(their.uri.user or ""))
        if account is None:
            return  # challenged or refused
        if sub is not None:
            self._refresh(txn, sub, account, expires)
            return
        target, entity = self._target(req)
        if target is None:
            txn.reply(errors.NOT_FOUND)
            return
        if not contacts or contacts[0].star:
            txn.reply(errors.BAD_REQUEST, "Bad Request (no Contact)")
            return
        if 0 < expires < self.settings.subscribe_min:
            txn.reply(errors.INTERVAL_TOO_BRIEF,
                      headers=[("Min-Expires", str(self.settings.subscribe_min))])
            return
        if expires and (len(self.subscriptions) >= self.settings.max_subscriptions
                        or self.per_user.get(account.agent_id, 0)
                        >= self.settings.max_subscriptions_per_user):
            log.warning("SUBSCRIBE from %s (%s) to %s refused: too many subscriptions",
                        account.agent_id, txn.flow, target)
            txn.reply(errors.SERVICE_UNAVAILABLE, TOO_MANY_REASON,
                      headers=[("Retry-After", RETRY_AFTER)])
            return
        expires = min(expires, self.settings.subscribe_max)
        sub = Subscription(req.call_id, txn.to_tag, account.agent_id, target, entity,
                           txn.flow, contacts[0].uri.text, req.get("to") or "",
                           req.get("from") or "", req.get("event") or di.EVENT,
                           routes=req.values("record-route"))
        self._ok(txn, expires)
        if expires == 0:  # a fetch (RFC 6665 §4.4.3): the state once, then over
            sub.over = True
            self._notify(sub, "terminated;reason=timeout")
            return
        self._keep(sub, expires)
        log.info("%s subscribes to the dialogs of %s for %ds", account.agent_id, target,
                 expires)
        self._notify(sub)

    def _refresh(self, txn: ServerTransaction, sub: Subscription, account: Any,
                 expires: int) -> None:
        if account.agent_id != sub.subscriber:
            txn.reply(errors.FORBIDDEN, errors.AUTH_FAILED_REASON)
            return
        if 0 < expires < self.settings.subscribe_min:
            txn.reply(errors.INTERVAL_TOO_BRIEF,
                      headers=[("Min-Expires", str(self.settings.subscribe_min))])
            return
        expires = min(expires, self.settings.subscribe_max)
        self._ok(txn, expires)
        if expires == 0:
            self._end(sub, "timeout")
            return
        self._keep(sub, expires)
        self._notify(sub)

    def _ok(self, txn: ServerTransaction, expires: int) -> None:
        txn.reply(errors.OK, headers=[("Expires", str(expires)),
                                      ("Contact", f"<{self._contact(txn.flow)}>")])

    def _target(self, req: Request) -> tuple[str | None, str]:
        uri = req.request_uri
        user = unescape(uri.user or "")
        account = self.calls.account(user) if user else None
        agent_id = account.agent_id if account is not None else \
            (self.calls.agent_by_extension(user) if user else None)
        return agent_id, f"sip:{user}@{uri.host}"

    def _contact(self, flow: Flow) -> str:
        ep = self.endpoint
        if flow.reliable and ep.tcp_port:
            return f"sip:{ep.host}:{ep.tcp_port};transport=tcp"
        return ep.uri()

    # ================================================================ subscriptions

    def _keep(self, sub: Subscription, expires: int) -> None:
        key = (sub.call_id, sub.our_tag)
        if key not in self.subscriptions:
            self.subscriptions[key] = sub
            self.by_target.setdefault(sub.target, set()).add(sub)
            self.per_user[sub.subscriber] = self.per_user.get(sub.subscriber, 0) + 1
        if sub.timer is not None and sub.timer.active():
            sub.timer.cancel()
        sub.expires_at = self.now() + expires
        sub.timer = self.endpoint.timers.call_later(expires, self._expired, sub)

    def _expired(self, sub: Subscription) -> None:
        if not sub.over:
            log.info("subscription of %s to %s expired", sub.subscriber, sub.target)
            self._end(sub, "timeout")

    def _end(self, sub: Subscription, reason: str) -> None:
        """A last NOTIFY saying the subscription is over, then forget it."""
        self._drop(sub)
        self._notify(sub, f"terminated;reason={reason}")

    def _drop(self, sub: Subscription) -> None:
        if sub.over:
            return
        sub.over = True
        if sub.timer is not None and sub.timer.active():
            sub.timer.cancel()
        if self.subscriptions.pop((sub.call_id, sub.our_tag), None) is sub:
            self.by_target.get(sub.target, set()).discard(sub)
            if not self.by_target.get(sub.target):
                self.by_target.pop(sub.target, None)
            left = self.per_user.get(sub.subscriber, 1) - 1
            if left > 0:
                self.per_user[sub.subscriber] = left
            else:
                self.per_user.pop(sub.subscriber, None)

    def _notify(self, sub: Subscription, state: str | None = None) -> None:
        """The target's calls as they are now, in the next NOTIFY: sent at once, or after
        the NOTIFY in flight is answered (one at a time per subscription, so each state
        reaches the subscriber, in order; at most MAX_QUEUED_NOTIFIES wait)."""
        dialogs = tuple(self.dialogs.get(sub.target, {}).values())
        if sub.subscriber != sub.target:  # a colleague's lamp: busy or not, never the caller
            dialogs = tuple(replace(d, remote="") for d in dialogs)
        sub.queue.append((dialogs, state))
        if len(sub.queue) > MAX_QUEUED_NOTIFIES:
            del sub.queue[:-1]  # a subscriber that does not keep up gets the latest state
        if not sub.sending:
            self._send_next(sub)

    def _send_next(self, sub: Subscription) -> None:
        ep = self.endpoint
        dialogs, state = sub.queue.pop(0)
        if state is None:
            left = max(0, round(sub.expires_at - self.now()))
            state = f"active;expires={left}"
        body = di.render(sub.entity, sub.version, dialogs)
        sub.version += 1
        sub.sending = True
        sub.cseq += 1
        headers = [("via", "Via", ep.via(sub.flow)),
                   ("max-forwards", "Max-Forwards", MAX_FORWARDS)]
        headers += [("route", "Route", r) for r in sub.routes]
        headers += [("from", "From", f"{sub.local};tag={sub.our_tag}"),
                    ("to", "To", sub.remote), ("call-id", "Call-ID", sub.call_id),
                    ("cseq", "CSeq", f"{sub.cseq} NOTIFY"),
                    ("contact", "Contact", f"<{self._contact(sub.flow)}>"),
                    ("event", "Event", sub.event),
                    ("subscription-state", "Subscription-State", state),
                    ("content-type", "Content-Type", di.CONTENT_TYPE)]
        notify = Request(headers, body, "NOTIFY", sub.contact)
        ep.request(notify, sub.flow, lambda resp: self._notified(sub, resp))

    def _notified(self, sub: Subscription, resp: Response) -> None:
        if resp.status < 200:
            return
        sub.sending = False
        if resp.status >= 300:
            sub.queue.clear()
            if not sub.over:
                log.info("NOTIFY to %s for %s answered %d: subscription ended",
                         sub.subscriber, sub.target, resp.status)
                self._drop(sub)
        elif sub.queue:
            self._send_next(sub)

    # ================================================================ our legs

    def dialog(self, agent_id: str, invite: Request, state: str, resp: Response | None = None,
               event: str = "") -> None:
        """control.py: the leg (`invite`, as proxied) to `agent_id`'s phone is now `state`
        (trying | early | confirmed | terminated)."""
        call_id = invite.call_id
        self._ours(call_id)
        legs = self.dialogs.setdefault(agent_id, {})
        old = legs.get(call_id)
        if old is None and state == di.TERMINATED:
            if not legs:
                self.dialogs.pop(agent_id, None)
            return
        if old is not None and old.state == state:
            return
        local_tag = old.local_tag if old is not None else ""
        if resp is not None and not local_tag:
            try:
                local_tag = resp.to.tag or ""
            except ParseError:
                local_tag = ""
        try:
            caller = invite.from_
            remote, remote_tag = caller.uri.text, caller.tag or ""
        except ParseError:
            remote, remote_tag = "", ""
        legs[call_id] = di.Dialog(
            id=hashlib.sha256(call_id.encode("utf-8", "surrogateescape")).hexdigest()[
                :DIALOG_ID_CHARS],
            state=state, call_id=call_id, local_tag=local_tag, remote_tag=remote_tag,
            direction="recipient", event=event, remote=remote)
        for sub in list(self.by_target.get(agent_id, ())):
            self._notify(sub)
        if state == di.TERMINATED:  # told once: gone from the next document
            del legs[call_id]
            if not legs:
                self.dialogs.pop(agent_id, None)

    def _ours(self, call_id: str) -> None:
        self.ours[call_id] = None
        self.ours.move_to_end(call_id)
        while len(self.ours) > RECENT_CALLS:
            self.ours.popitem(last=False)

    def is_ours(self, call_id: str) -> bool:
        return call_id in self.ours

    # ================================================================ busy on the phone

    def refused_busy(self, agent_id: str) -> None:
        """control.py: the agent's phone answered 486 (after `calls.refused(busy=True)`):
        engaged until its dialog state says idle, or `busy_seconds`."""
        old = self.busy.pop(agent_id, None)
        if old is not None and old.active():
            old.cancel()
        self.busy[agent_id] = self.endpoint.timers.call_later(
            self.settings.busy_seconds, self._busy_over, agent_id)
        self._update(agent_id, "answered 486 Busy Here")

    def _busy_over(self, agent_id: str) -> None:
        self.busy.pop(agent_id, None)
        self._update(agent_id, f"no call refused for {self.settings.busy_seconds:g}s")

    def phone_state(self, agent_id: str, active: bool | None) -> None:
        """watch.py: the agent's phone shows a call of its own (True), none (False), or its
        dialog state is no longer known (None: the subscription ended)."""
        if active is None:
            self.phone_active.pop(agent_id, None)
            why = "dialog subscription ended"
        else:
            self.phone_active[agent_id] = active
            why = "its dialog state: " + ("a call of its own" if active else "idle")
        if active is False:  # idle as the phone says: the 486 is over too
            timer = self.busy.pop(agent_id, None)
            if timer is not None and timer.active():
                timer.cancel()
        self._update(agent_id, why)

    def _update(self, agent_id: str, why: str) -> None:
        wanted = agent_id in self.busy or self.phone_active.get(agent_id, False)
        if self.reported.get(agent_id, False) == wanted:
            return
        if wanted:
            self.reported[agent_id] = True
        else:
            self.reported.pop(agent_id, None)
        log.info("agent %s %s on the phone: %s", agent_id,
                 "busy" if wanted else "free again", why)
        d = self.calls.device(agent_id, engaged=wanted)
        d.addErrback(lambda f: log.warning("presence of %s not applied: %s", agent_id,
                                           f.getErrorMessage()))

    def engaged(self, agent_id: str) -> bool:
        return self.reported.get(agent_id, False)

    # ================================================================ stop

    def stop(self) -> None:
        for sub in list(self.subscriptions.values()):
            self._drop(sub)
        for timer in self.busy.values():
            if timer.active():
                timer.cancel()
        self.busy.clear()
        self.watch.stop()


def new_tag() -> str:
    return os.urandom(TAG_BYTES).hex()
