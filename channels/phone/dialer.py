"""The dialer: callbacks to SIP agents, the agent's phone first, then the customer (issue 18).

Sits in the phone edge beside control.py, on the same SIP endpoint (sip.py), as a user agent
client of its own (third-party call control, RFC 3725 flow I); talks to the core only through
`calls.callbacks` (dispatcher.service.callbacks) and the assignment listener. What it promises
(docs/phone.md "Callbacks"):

- TASK_OFFERED of a callback task to an agent with a registered phone → INVITE without SDP to
  the phone's contact, From naming the customer's number (the phone shows who it will call).
  OFFER_EXPIRED (RONA) / OFFER_WITHDRAWN → CANCEL it; the task stays in its queue. 486/603/...
  → `callbacks.refused` (a reject; the router offers the next agent).
- The phone's 2xx (its SDP offer) → `callbacks.agent_answered` (the accept; or nothing more when
  the desk accepted already), then `callbacks.dialled` (one attempt) and an INVITE to
  `[phone] callback_uri` with the agent's SDP. The customer's 2xx → ACK to the customer, ACK to
  the agent carrying the customer's SDP (the answer), `callbacks.reached`: media flows directly
  between the two phones; we stay in both dialogs (our Contact), not in the media.
- The customer's failure (486/600 busy; 408/480/487 and `callback_ring_timeout` no answer;
  anything else failed), or the agent hanging up meanwhile → the agent's 2xx is ACKed with an
  answer refusing every stream and hung up (BYE), `callbacks.not_reached` (the service retries
  or ends the task). A 2xx that crosses our CANCEL is ACKed and hung up.
- A BYE from either side of a connected callback → 200, BYE to the other side,
  `callbacks.ended` (the agent's wrap-up). Other requests inside our dialogs: 200 for OPTIONS,
  488 for a re-INVITE (we do not renegotiate media), 501 otherwise.

The limit of flow I (RFC 3725 §4.1): the agent's phone retransmits its 2xx until our ACK for
32 s, so the customer rings at most `callback_ring_timeout` <= 30 s (config.check).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from dispatcher.domain import callbacks as cb
from dispatcher.domain import events as ev

from . import errors, translate
from .config import PhoneSettings
from .parse import ParseError, Request, Response
from .sip import ClientTransaction, Endpoint, Flow, ServerTransaction, Timer, flow_of_uri, stop_all

log = logging.getLogger(__name__)

SDP = "application/sdp"
DEFAULT_MAX_FORWARDS = 70


def new_id() -> str:
    return os.urandom(8).hex()


def refusing_answer(offer: bytes) -> bytes:
    """An SDP answer to `offer` that refuses every stream (port 0, RFC 3264 §6): what the
    agent's ACK carries when there is nobody to talk to."""
    lines = offer.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    out = ["v=0", "o=switchboard 0 0 IN IP4 0.0.0.0", "s=-", "c=IN IP4 0.0.0.0", "t=0 0"]
    for line in lines:
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) >= 4:
                out.append(f"m={parts[0]} 0 {parts[2]} {parts[3]}")
    return ("\r\n".join(out) + "\r\n").encode()


@dataclass(eq=False)
class Leg:
    """One INVITE we send (the agent's phone, or the customer)."""

    role: str  # agent | customer
    flow: Flow
    invite: Request
    txn: ClientTransaction | None = None
    state: str = "trying"  # trying | ringing | answered | done
    provisional: bool = False
    cancelled: bool = False
    cancel_sent: bool = False
    ok: Response | None = None
    ack: Request | None = None
    cseq: int = 1


@dataclass(eq=False)
class Session:
    """One attempt of one callback task with one agent."""

    task_id: str
    agent_id: str
    offer_id: str | None
    number: str
    agent: Leg
    customer: Leg | None = None
    state: str = "ringing_agent"  # ringing_agent | answering | dialling | connected | over
    timers: list[Timer] = field(default_factory=list)


class Dialer:
    def __init__(self, reactor: Any, callbacks: Any, calls: Any, settings: PhoneSettings,
                 endpoint: Endpoint) -> None:
        self.reactor = reactor
        self.callbacks = callbacks
        self.calls = calls
        self.settings = settings
        self.endpoint = endpoint
        self.by_task: dict[str, Session] = {}
        self.by_call_id: dict[str, tuple[Session, Leg]] = {}

    # ================================================================ offers

    def heard(self, outcome: Any) -> None:
        """Assignment listener: offers of callbacks ring agents' phones; ended offers stop."""
        for event in outcome.events:
            kind = event.kind
            if kind == ev.TASK_OFFERED:
                task = self.callbacks.task(event.task_id)
                if task is not None:
                    self._ring(task, event.agent_id, event.data.get("offer_id"))
            elif kind in (ev.OFFER_EXPIRED, ev.OFFER_WITHDRAWN, ev.OFFER_REJECTED):
                s = self.by_task.get(event.task_id)
                if s is not None and s.agent_id == event.agent_id \
                        and s.state == "ringing_agent":
                    log.info("callback %s: offer to %s ended (%s): CANCEL", s.task_id,
                             s.agent_id, kind)
                    self._cancel(s.agent)
                    self._over(s)
            elif kind in (ev.TASK_CANCELLED, ev.TASK_REQUEUED):
                s = self.by_task.get(event.task_id)
                if s is not None and s.state in ("ringing_agent", "answering"):
                    self._cancel(s.agent)
                    self._over(s)

    def _ring(self, task: Any, agent_id: str, offer_id: str | None) -> None:
        binding = self.calls.binding(agent_id)
        if binding is None:
            return  # an agent of a PBX (the CTI sends the `callback`), or no phone
        old = self.by_task.get(task.id)
        if old is not None:
            self._cancel(old.agent)
            self._over(old)
        number = cb.number_of(task.attributes) or ""
        flow = self.endpoint.flow_to(binding.source, binding.contact)
        invite = self._invite(binding.contact, number, flow, body=b"")
        s = Session(task.id, agent_id, offer_id, number, Leg("agent", flow, invite))
        self.by_task[task.id] = s
        self.by_call_id[invite.call_id] = (s, s.agent)
        log.info("callback %s rings %s at %s (to call %s)", task.id, agent_id,
                 binding.contact, number)
        s.agent.txn = self.endpoint.request(invite, flow,
                                            lambda resp: self._agent_response(s, resp))

    def _invite(self, uri: str, number: str, flow: Flow, body: bytes) -> Request:
        ep = self.endpoint
        port = ep.tcp_port if flow.reliable and ep.tcp_port else ep.udp_port
        transport = ";transport=tcp" if flow.reliable else ""
        user = number.lstrip("+") and number or "callback"
        headers = [
            ("via", "Via", ep.via(flow)),
            ("max-forwards", "Max-Forwards", str(DEFAULT_MAX_FORWARDS)),
            ("from", "From", f'"Callback {number}" <sip:{user}@{ep.host}>;tag={new_id()}'),
            ("to", "To", f"<{uri}>"),
            ("call-id", "Call-ID", f"cb-{new_id()}@{ep.host}"),
            ("cseq", "CSeq", "1 INVITE"),
            ("contact", "Contact", f"<sip:callback@{ep.host}:{port}{transport}>"),
            ("user-agent", "User-Agent", self.settings.user_agent),
        ]
        if body:
            headers.append(("content-type", "Content-Type", SDP))
        return Request(headers, body, "INVITE", uri)

    # ================================================================ the agent's leg

    def _agent_response(self, s: Session, resp: Response) -> None:
        leg = s.agent
        if resp.status < 200:
            leg.provisional = True
            if leg.cancelled:
                self._send_cancel(leg)
            elif resp.status != errors.TRYING and leg.state == "trying":
                leg.state = "ringing"
            return
        if resp.status < 300:
            self._agent_answered(s, resp)
            return
        was, leg.state = leg.state, "done"
        if leg.cancelled or was == "done":
            return
        log.info("callback %s: %s's phone answered %d", s.task_id, s.agent_id, resp.status)
        reason = errors.refusal(resp.status)
        self._over(s)
        self.callbacks.refused(s.task_id, s.agent_id, reason).addErrback(self._bug, "refusing")

    def _agent_answered(self, s: Session, resp: Response) -> None:
        leg = s.agent
        if leg.ack is not None:  # answered before (our ACK lost): the same ACK again
            self.endpoint.send_stateless(leg.ack, leg.flow)
            return
        if leg.state == "answered":
            return  # a retransmitted 2xx while the customer rings: ACKed when they answer
        leg.state, leg.ok = "answered", resp
        if leg.cancelled or s.state != "ringing_agent":
            self._hang_up(leg)  # the 2xx crossed our CANCEL
            return
        s.state = "answering"
        d = self.callbacks.agent_answered(s.task_id, s.agent_id)
        d.addCallbacks(lambda _: self._dial(s), self._not_taken, errbackArgs=(s,))
        d.addErrback(self._bug, "connecting a callback")

    def _not_taken(self, failure: Any, s: Session) -> None:
        log.info("callback %s: the answer of %s refused by the core (%s): hanging up",
                 s.task_id, s.agent_id, failure.getErrorMessage())
        self._hang_up(s.agent)
        self._over(s)

    # ================================================================ the customer's leg

    def _dial(self, s: Session) -> defer.Deferred:
        if s.state != "answering":
            return defer.succeed(None)
        s.state = "dialling"
        d = self.callbacks.dialled(s.task_id, s.agent_id, "sip")
        d.addCallbacks(lambda _: self._invite_customer(s), self._not_taken, errbackArgs=(s,))
        return d

    def _invite_customer(self, s: Session) -> None:
        if s.state != "dialling":
            return
        uri = self.settings.callback_uri.format(number=s.number)
        try:
            flow = flow_of_uri(uri)
        except ParseError as exc:
            log.error("callback %s: bad callback_uri %r: %s", s.task_id, uri, exc)
            self._customer_failed(s, "failed")
            return
        body = (s.agent.ok.body if s.agent.ok is not None else b"") or b""
        invite = self._invite(uri, s.number, flow, body)
        leg = Leg("customer", flow, invite)
        s.customer = leg
        self.by_call_id[invite.call_id] = (s, leg)
        log.info("callback %s: dialling %s for %s", s.task_id, uri, s.agent_id)
        s.timers.append(self.endpoint.timers.call_later(
            self.settings.callback_ring_timeout, self._ring_timeout, s))
        leg.txn = self.endpoint.request(invite, flow,
                                        lambda resp: self._customer_response(s, leg, resp))

    def _customer_response(self, s: Session, leg: Leg, resp: Response) -> None:
        if resp.status < 200:
            leg.provisional = True
            if leg.cancelled:
                self._send_cancel(leg)
            elif resp.status != errors.TRYING:
                leg.state = "ringing"
            return
        if resp.status < 300:
            if leg.ack is not None:
                self.endpoint.send_stateless(leg.ack, leg.flow)
                return
            leg.ok = resp
            if leg.cancelled or s.state != "dialling":
                self._hang_up(leg)
                return
            self._connect(s, leg, resp)
            return
        leg.state = "done"
        if leg.cancelled or s.state != "dialling":
            return
        status = resp.status
        reason = "busy" if status in (486, 600) else \
            "no_answer" if status in (408, 480, 487) else "failed"
        log.info("callback %s: the customer answered %d (%s)", s.task_id, status, reason)
        self._customer_failed(s, reason)

    def _ring_timeout(self, s: Session) -> None:
        if s.state != "dialling" or s.customer is None:
            return
        log.info("callback %s: no answer in %gs", s.task_id, self.settings.callback_ring_timeout)
        self._cancel(s.customer)
        self._customer_failed(s, "timeout")

    def _connect(self, s: Session, leg: Leg, resp: Response) -> None:
        leg.state = "answered"
        s.state = "connected"
        stop_all(s.timers)
        self._ack(leg, b"")
        self._ack(s.agent, resp.body or b"")  # flow I: the customer's answer goes to the agent
        log.info("callback %s: %s reached, talking to %s", s.task_id, s.number, s.agent_id)
        self.callbacks.reached(s.task_id, s.agent_id).addErrback(self._bug, "reached")

    def _customer_failed(self, s: Session, reason: str) -> None:
        stop_all(s.timers)
        self._hang_up(s.agent)
        self._over(s)
        self.callbacks.not_reached(s.task_id, s.agent_id, reason) \
            .addErrback(self._bug, "not reached")

    # ================================================================ inside our dialogs

    def in_dialog(self, txn: ServerTransaction) -> bool:
        """A request inside one of our dialogs (control.py hands those it does not hold):
        handled here (True), or not ours (False)."""
        req = txn.request
        found = self.by_call_id.get(req.call_id)
        if found is None:
            return False
        s, leg = found
        if req.method == "OPTIONS":
            txn.reply(errors.OK)
        elif req.method == "BYE":
            txn.reply(errors.OK)
            self._bye(s, leg)
        elif req.method == "INVITE":
            txn.reply(488, "Not Acceptable Here (no renegotiation)")
        else:
            txn.reply(errors.NOT_IMPLEMENTED)
        return True

    def _bye(self, s: Session, leg: Leg) -> None:
        leg.state = "done"
        self.by_call_id.pop(leg.invite.call_id, None)
        if s.state == "connected":
            other = s.customer if leg is s.agent else s.agent
            if other is not None:
                self._bye_leg(other)
            by = "agent" if leg is s.agent else "customer"
            log.info("callback %s ended by the %s", s.task_id, by)
            self._over(s)
            self.callbacks.ended(s.task_id, by).addErrback(self._bug, "ending a callback")
        elif s.state == "dialling" and leg is s.agent:
            log.info("callback %s: %s hung up before the customer answered", s.task_id,
                     s.agent_id)
            if s.customer is not None:
                self._cancel(s.customer)
            self._customer_failed(s, "agent_hung_up")
        elif s.state == "answering" and leg is s.agent:
            self._over(s)
            self.callbacks.agent_lost(s.task_id, s.agent_id, "agent_hung_up") \
                .addErrback(self._bug, "agent lost")

    # ================================================================ SIP helpers

    def _ack(self, leg: Leg, body: bytes) -> None:
        if leg.ok is None:
            return
        ep = self.endpoint
        ack = translate.in_dialog(leg.invite, leg.ok, "ACK", ep.via(leg.flow),
                                  leg.invite.cseq.number)
        if body:
            ack.body = body
            ack.add("Content-Type", SDP)
        ep.send_stateless(ack, leg.flow)
        leg.ack = ack

    def _bye_leg(self, leg: Leg) -> None:
        if leg.ok is None or leg.state == "done":
            return
        ep = self.endpoint
        leg.cseq = leg.invite.cseq.number + 1
        bye = translate.in_dialog(leg.invite, leg.ok, "BYE", ep.via(leg.flow), leg.cseq)
        ep.request(bye, leg.flow, lambda resp: None)
        leg.state = "done"

    def _hang_up(self, leg: Leg) -> None:
        """ACK a 2xx nobody will use (with an answer refusing the streams when it made an
        offer) and BYE it."""
        if leg.ok is None or leg.state == "done":
            return
        if leg.ack is None:
            offer = b"" if leg.invite.body else (leg.ok.body or b"")
            self._ack(leg, refusing_answer(offer) if offer else b"")
        self._bye_leg(leg)

    def _cancel(self, leg: Leg | None) -> None:
        if leg is None or leg.cancelled:
            return
        leg.cancelled = True
        if leg.state == "answered":
            self._hang_up(leg)
        elif leg.provisional and leg.state in ("trying", "ringing"):
            self._send_cancel(leg)
        elif leg.txn is not None:
            leg.txn.stop_retransmitting()  # the CANCEL goes with the first provisional

    def _send_cancel(self, leg: Leg) -> None:
        if leg.cancel_sent:
            return
        leg.cancel_sent = True
        self.endpoint.request(translate.cancel_for(leg.invite), leg.flow, lambda resp: None)

    def _over(self, s: Session) -> None:
        """The session is over: its timers stop and its dialogs are forgotten (a request
        still arriving in one of them gets 481 from control.py)."""
        stop_all(s.timers)
        s.state = "over"
        if self.by_task.get(s.task_id) is s:
            del self.by_task[s.task_id]
        for leg in (s.agent, s.customer):
            if leg is not None and self.by_call_id.get(leg.invite.call_id, (None,))[0] is s:
                del self.by_call_id[leg.invite.call_id]

    def stop(self) -> None:
        """Callbacks ringing are cancelled, connected ones go on between the phones."""
        for s in list(self.by_task.values()):
            if s.state != "connected":
                self._cancel(s.agent)
                self._cancel(s.customer)
            stop_all(s.timers)
        self.by_task.clear()

    @staticmethod
    def _bug(failure: Any, what: str) -> None:
        log.error("dialer: %s failed: %s", what, failure.getTraceback())
