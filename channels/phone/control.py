"""Call control: an INVITE to a queue address becomes a phone task; the router's offer rings
the agent's registered phone; the phone's answers become the agent's accept or reject.

Sits in the phone edge as the transaction user of sip.py (REGISTER goes on to registrar.py);
talks to the core only through `calls` (dispatcher.service.calls.Calls) and the assignment
listener. What it promises (issue 5, DESIGN §5):
- INVITE to a configured queue address → 100 Trying (transaction layer), `calls.arrived` (the
  task is committed), then 182 Queued, repeated every `queued_interval` while the call waits.
  Unknown address → 404; unknown queue → 404; nothing stored → 503.
- Queue media (media.py, docs/phone.md "What callers hear"): an INVITE whose SDP offers PCMU or
  PCMA also gets 183 with our SDP once its stream runs, repeated instead of the 182; the
  agent's 18x is then not relayed; our stream stops when the agent's 200 is relayed or the
  call ends. The caller's `callback_digit` → `calls.keep_place`, the confirmation, then 480
  (Reason: callback booked) and the call is forgotten without `calls.abandoned`.
- TASK_OFFERED for a call we hold → the INVITE is proxied (Record-Route, our Via) to the agent's
  registered contact: the ringing phone is the offer. 18x is relayed. 2xx → `calls.answered`
  first, then the 200 goes to the caller (if the offer ended meanwhile, the agent leg is ACKed
  and hung up instead, once: the same 2xx again only gets the same ACK). 486/603/other
  failures → `calls.refused` (the router offers the next agent). OFFER_EXPIRED (RONA) or
  OFFER_WITHDRAWN → CANCEL the agent leg; a phone that has answered nothing yet (its INVITE
  still retransmitted, as under packet loss) gets no more retransmissions, so it is not
  reached after its offer ended; its late 1xx still gets the CANCEL, its late 2xx a hang-up.
- Abuse (issue 13): new INVITEs are limited per source address (`invite_rate`/`invite_burst`,
  a `dispatcher.guard.Budget`): beyond it 480 with Retry-After and nothing is stored; other
  sources (agents' phones, other callers) keep their own budgets. A Call-ID the core refuses
  (over 256 characters, a call that has ended) is 400 with the reason; a Call-ID of a call we
  hold is 482 for a merged request (same From tag and CSeq, §8.2.2.2), else 400; a Call-ID of
  a task that is no longer waiting is 400. Each refusal is logged at most once a minute per
  source and kind (`guard.Throttled`).
- Caller CANCEL → `calls.abandoned`, then 487. No agent within `max_queue_wait` → abandoned,
  480 with Retry-After.
- After the answer, requests inside the dialog (ACK, BYE, re-INVITE, ...) pass through us (we
  are in the route set); a BYE from either side → `calls.ended(by="caller"|"agent")`.
- OPTIONS → 200; REGISTER → registrar; SUBSCRIBE and NOTIFY → presence.py (each agent leg's
  state goes there too, and a 486 is `calls.refused(busy=True)` then `refused_busy`); other
  methods → 405 (known) / 501 (unknown);
  Request-URI of another scheme → 416; an unknown Require → 420.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from dispatcher.domain import events as ev
from dispatcher.domain.errors import InvalidValue, UnknownQueue
from dispatcher.guard import Budget, Throttled
from dispatcher.service.calls import MAX_CALL_ID

from . import errors, translate
from .config import PhoneSettings, QueueAddresses
from .parse import ParseError, Request, Response
from .registrar import Registrar
from .sip import ClientTransaction, Endpoint, Flow, ServerTransaction, Timer, stop_all

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER"
KNOWN_METHODS = frozenset({"SUBSCRIBE", "NOTIFY", "MESSAGE", "PUBLISH", "REFER", "INFO",
                           "UPDATE", "PRACK"})
DIALOG_METHODS = frozenset({"BYE", "INFO", "UPDATE", "INVITE", "PRACK", "NOTIFY", "REFER",
                            "MESSAGE", "OPTIONS"})
SDP = "application/sdp"
SESSION_PROGRESS = 183  # with our SDP: queue media (media.py)
CALLBACK_REASON = "Temporarily Unavailable (callback booked)"
TAG_BYTES = 6
WAITING_STATES = ("queued", "offered")  # a task a new INVITE may (re)join: after a restart


def new_tag() -> str:
    return os.urandom(TAG_BYTES).hex()


@dataclass(eq=False)
class Leg:
    """The INVITE proxied to one agent's phone (one offer)."""

    agent_id: str
    offer_id: str | None
    flow: Flow
    invite: Request
    txn: ClientTransaction | None = None
    state: str = "trying"  # trying | ringing | answering | answered | done
    provisional: bool = False
    cancelled: bool = False  # we CANCEL it (offer over, caller gone): no refusal to report
    cancel_sent: bool = False
    ok: Response | None = None
    ack: Request | None = None  # ours for its 2xx when we hung it up (sent again on a retransmit)


@dataclass(eq=False)
class Call:
    call_id: str
    txn: ServerTransaction
    caller_flow: Flow
    caller_tag: str | None
    queue: str
    state: str = "arriving"  # arriving | queued | answered | over
    task_id: str | None = None
    cancelled: str | None = None  # why the caller's side ended before the answer
    leg: Leg | None = None
    agent_flow: Flow | None = None
    agent_id: str | None = None
    timers: list[Timer] = field(default_factory=list)
    keeping: bool = False  # the caller asked for a callback (keep_place under way)

    @property
    def waiting(self) -> bool:
        return self.state in ("arriving", "queued") and not self.txn.final


class CallControl:
    def __init__(self, reactor: Any, calls: Any, queries: Any, settings: PhoneSettings,
                 registrar: Registrar | None = None, presence: Any = None) -> None:
        self.reactor = reactor
        self.calls = calls
        self.queries = queries
        self.settings = settings
        self.addresses = QueueAddresses.from_settings(settings)
        self.registrar = registrar or Registrar(reactor, calls, settings)
        self.endpoint: Endpoint | None = None
        self.dialer: Any = None  # dialer.Dialer: callbacks' dialogs (set by the plugin)
        self.by_call_id: dict[str, Call] = {}
        self.invites = Budget(settings.invite_rate, settings.invite_burst)
        self.retry_after = max(1, math.ceil(1 / settings.invite_rate))
        self.refusals = Throttled(log)
        self.hold: Any = None  # media.Hold: what queued callers hear (set by plugin.py)
        # presence.py (SUBSCRIBE/NOTIFY, our legs' dialog states, 486): None answers them 405
        self.presence = presence

    def attach(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        if self.presence is not None:
            self.presence.attach(endpoint)

    # ================================================================ transaction user

    def request(self, txn: ServerTransaction) -> None:
        req = txn.request
        if req.method == "REGISTER":
            self.registrar.register(txn)
            return
        uri = req.request_uri
        if not uri.is_sip:
            txn.reply(errors.UNSUPPORTED_URI_SCHEME)
            return
        unsupported = [r for r in req.values("require") if r]
        if unsupported:
            txn.reply(errors.BAD_EXTENSION, to_tag=new_tag(),
                      headers=[("Unsupported", ", ".join(unsupported))])
            return
        if self.presence is not None and req.method in ("SUBSCRIBE", "NOTIFY"):
            self.presence.request(txn)
        elif req.to.tag:
            self._in_dialog(txn)
        elif req.method == "INVITE":
            self._invite(txn)
        elif req.method == "OPTIONS":
            served = [] if self.presence is None else \
                [("Allow", ALLOW + ", SUBSCRIBE, NOTIFY"), ("Allow-Events", "dialog")]
            txn.reply(errors.OK, to_tag=new_tag(),
                      headers=(served or [("Allow", ALLOW)])
                      + [("Accept", SDP), ("Server", self.settings.user_agent)])
        elif req.method == "BYE":
            txn.reply(errors.NO_TRANSACTION, to_tag=new_tag())
        elif req.method in KNOWN_METHODS:
            txn.reply(errors.METHOD_NOT_ALLOWED, to_tag=new_tag(), headers=[("Allow", ALLOW)])
        else:
            txn.reply(errors.NOT_IMPLEMENTED, to_tag=new_tag(), headers=[("Allow", ALLOW)])

    def ack(self, request: Request, flow: Flow) -> None:
        """An ACK for a 2xx: end to end, passed to the other side of the call."""
        call = self.by_call_id.get(request.call_id)
        if call is None or call.state != "answered":
            return
        target = self._other_side(call, request)
        if target is None:
            return
        drop = translate.count_our_routes(request, self.endpoint.is_us)
        fwd = translate.forwarded(request, self.endpoint.via(target), drop_routes=drop)
        self.endpoint.send_stateless(fwd, target)

    def cancel(self, invite: ServerTransaction, cancel: Request) -> None:
        call = invite.data
        if not isinstance(call, Call):
            if not invite.final:
                invite.reply(errors.REQUEST_TERMINATED)
            return
        self._caller_gone(call, errors.ABANDONED_CANCEL, errors.REQUEST_TERMINATED)

    def stray_response(self, response: Response, flow: Flow) -> None:
        log.debug("response %d matching no transaction from %s dropped", response.status, flow)

    # ================================================================ new calls

    def _invite(self, txn: ServerTransaction) -> None:
        req = txn.request
        uri = req.request_uri
        queue = self.addresses.queue_for(uri.user, uri.host)
        txn.to_tag = new_tag()
        if queue is None:
            txn.reply(errors.NOT_FOUND, errors.NO_QUEUE_REASON)
            return
        if translate.max_forwards(req) == 0:
            txn.reply(483)
            return
        ctype = (req.get("content-type") or "").split(";")[0].strip().lower()
        if req.body and ctype != SDP:
            txn.reply(errors.UNSUPPORTED_MEDIA_TYPE, headers=[("Accept", SDP)])
            return
        held = self.by_call_id.get(req.call_id)
        if held is not None:
            self._call_id_in_use(txn, held)
            return
        if len(req.call_id) > MAX_CALL_ID:  # the core's limit, applied before the budget
            self._refused(txn.flow, "invalid", "INVITE %.80s from %s refused: Call-ID of %d "
                          "characters", req.call_id, txn.flow, len(req.call_id))
            txn.reply(errors.BAD_REQUEST, errors.CALL_ID_TOO_LONG_REASON)
            return
        now = self.endpoint.clock.seconds()
        if not self.invites.take(txn.flow.host, now):
            self.refusals.warning((txn.flow.host, "flood"), now,
                                  "INVITEs from %s beyond %g/s (burst %d): refused with 480",
                                  txn.flow.host, self.settings.invite_rate,
                                  self.settings.invite_burst)
            txn.reply(errors.TEMPORARILY_UNAVAILABLE, errors.FLOOD_REASON,
                      headers=[("Retry-After", str(self.retry_after))])
            return
        call = Call(req.call_id, txn, txn.flow, req.from_.tag, queue)
        txn.data = call
        self.by_call_id[call.call_id] = call
        d = self.calls.arrived(call.call_id, translate.caller_of(req), queue, source="sip",
                               attributes=translate.call_attributes(req))
        d.addCallbacks(self._queued, self._not_queued, (call,), None, (call,))
        d.addErrback(self._bug, "queueing a call")

    def _call_id_in_use(self, txn: ServerTransaction, held: Call) -> None:
        req = txn.request
        merged = held.caller_tag == req.from_.tag \
            and held.txn.request.cseq.number == req.cseq.number
        self._refused(txn.flow, "call-id", "INVITE %.80s from %s: Call-ID in use (%s)",
                      req.call_id, txn.flow, "merged" if merged else "another call")
        if merged:
            txn.reply(errors.LOOP_DETECTED)  # §8.2.2.2: a merged request
        else:
            txn.reply(errors.BAD_REQUEST, errors.CALL_ID_IN_USE_REASON)

    def _refused(self, flow: Flow, kind: str, msg: str, *args: Any) -> None:
        self.refusals.warning((flow.host, kind), self.endpoint.clock.seconds(), msg, *args)

    def _queued(self, task: Any, call: Call) -> None:
        state = getattr(task, "state", None)
        if state is not None and str(state) not in WAITING_STATES:
            # the Call-ID of an earlier call whose task is with an agent: not this caller's
            self._forget(call)
            self._refused(call.caller_flow, "call-id", "INVITE %.80s from %s: Call-ID of a "
                          "task in state %s", call.call_id, call.caller_flow, state)
            if not call.txn.final:
                call.txn.reply(errors.BAD_REQUEST, errors.CALL_ID_IN_USE_REASON)
            return
        call.task_id = task.id
        if call.cancelled is not None:  # the caller gave up while the call was being stored
            self._abandon(call, call.cancelled, errors.REQUEST_TERMINATED)
            return
        if call.state == "arriving":
            call.state = "queued"
        if not call.txn.final:
            call.timers.append(self.endpoint.timers.call_later(self.settings.max_queue_wait,
                                                      self._queue_timeout, call))
            call.txn.reply(errors.QUEUED, errors.QUEUED_REASON)  # at once; 183 when media
            body = call.txn.request.body
            if self.hold is None or not body:
                self._next_progress(call)
                return
            d = self.hold.begin(call.call_id, task, call.queue, body.decode(errors="replace"))
            d.addCallback(lambda answer: self._still_queued(call) if answer
                          else self._next_progress(call))
            d.addErrback(self._bug, "starting queue media")

    def _not_queued(self, failure: Any, call: Call) -> None:
        self._forget(call)
        if failure.check(UnknownQueue):
            self._refused(call.caller_flow, "queue", "queue address of %.80s names no queue: %s",
                          call.call_id, failure.getErrorMessage())
            call.txn.reply(errors.NOT_FOUND, errors.NO_QUEUE_REASON)
            return
        if failure.check(InvalidValue):  # the core's rules on calls (Call-ID length, reuse)
            why = errors.warning_text(failure.getErrorMessage())
            self._refused(call.caller_flow, "invalid", "INVITE %.80s from %s refused: %s",
                          call.call_id, call.caller_flow, why)
            call.txn.reply(errors.BAD_REQUEST, f"Bad Request ({why})")
            return
        log.error("call %s not stored: %s", call.call_id, failure.getErrorMessage())
        call.txn.reply(errors.SERVICE_UNAVAILABLE, errors.STORE_FAILED_REASON,
                       headers=[("Retry-After", str(errors.RETRY_AFTER_SECONDS))])

    def _still_queued(self, call: Call) -> None:
        """182 Queued, or 183 with our SDP while the caller hears queue media (media.py)."""
        if not call.waiting or call.keeping:
            return
        answer = self.hold.answer_of(call.call_id) if self.hold is not None else None
        if answer is None:
            call.txn.reply(errors.QUEUED, errors.QUEUED_REASON)
        else:
            resp = call.txn.response(SESSION_PROGRESS)
            # our early dialog's remote target (§12.1.1); in-dialog requests to it get 481
            resp.add("Contact", self._record_route(call.caller_flow).replace(";lr>", ">"))
            resp.add("Content-Type", SDP)
            resp.body = answer.encode()
            call.txn.respond(resp)
        self._next_progress(call)

    def _next_progress(self, call: Call) -> None:
        call.timers.append(self.endpoint.timers.call_later(self.settings.queued_interval,
                                                  self._still_queued, call))

    def _queue_timeout(self, call: Call) -> None:
        if not call.waiting or (call.leg is not None and call.leg.state == "answering"):
            return
        log.info("call %s waited %gs in %s: given up", call.call_id,
                 self.settings.max_queue_wait, call.queue)
        self._caller_gone(call, errors.ABANDONED_TIMEOUT, errors.TEMPORARILY_UNAVAILABLE)

    def _caller_gone(self, call: Call, reason: str, status: int) -> None:
        """The caller's side ends before an answer: CANCEL, time limit, shutdown."""
        if call.state == "over" or call.cancelled is not None:
            return
        call.cancelled = reason
        if call.leg is not None and call.leg.state != "answering":
            self._cancel_leg(call.leg)
        if call.state == "arriving":
            return  # _queued abandons it once the arrival is stored
        self._abandon(call, reason, status)

    def _abandon(self, call: Call, reason: str, status: int) -> None:
        call.state = "over"
        stop_all(call.timers)

        def answer(result: Any) -> None:
            self._forget(call)
            headers = [("Retry-After", str(errors.RETRY_AFTER_SECONDS))] \
                if status == errors.TEMPORARILY_UNAVAILABLE else []
            reason_text = errors.QUEUE_TIMEOUT_REASON if reason == errors.ABANDONED_TIMEOUT \
                else None
            if not call.txn.final:
                call.txn.reply(status, reason_text, headers=headers)
            if isinstance(result, Failure):
                log.error("abandoning %s: %s", call.call_id, result.getErrorMessage())

        d = self.calls.abandoned(call.call_id, reason)
        d.addBoth(answer)
        d.addErrback(self._bug, "abandoning a call")

    # ================================================================ offers

    def heard(self, outcome: Any) -> None:
        """Assignment listener: offers of calls we hold ring phones; ended offers stop."""
        for event in outcome.events:
            kind = event.kind
            if kind == ev.TASK_OFFERED:
                call = self._call_of_task(event.task_id)
                if call is not None:
                    self._ring(call, event.agent_id, event.data.get("offer_id"))
                else:
                    self._lost(event.task_id)
            elif kind in (ev.OFFER_EXPIRED, ev.OFFER_WITHDRAWN):
                call = self._call_of_task(event.task_id)
                if call is not None and call.leg is not None \
                        and call.leg.agent_id == event.agent_id \
                        and call.leg.state in ("trying", "ringing"):
                    log.info("offer of %s to %s ended (%s): CANCEL", call.call_id,
                             event.agent_id, kind)
                    self._cancel_leg(call.leg)
                    call.leg = None
            elif kind == ev.TASK_CANCELLED:
                call = self._call_of_task(event.task_id)
                if call is not None and call.waiting:
                    stop_all(call.timers)
                    if call.leg is not None:
                        self._cancel_leg(call.leg)
                    call.state = "over"
                    self._forget(call)
                    call.txn.reply(errors.TEMPORARILY_UNAVAILABLE)

    def _call_of_task(self, task_id: str | None) -> Call | None:
        if task_id is None:
            return None
        call_id = self.calls.call_id(task_id)
        return None if call_id is None else self.by_call_id.get(call_id)

    def _lost(self, task_id: str | None) -> None:
        """An offer of a SIP call nobody holds (we restarted since it came): nobody will answer
        it, so it is abandoned rather than ringing agents for nothing."""
        if task_id is None or self.queries is None:
            return
        task = self.queries.task(task_id)
        if task is None or task.attributes.get("source") != "sip":
            return
        call_id = task.attributes.get("call_id")
        if call_id and call_id not in self.by_call_id:
            log.warning("call %s offered but not held here (lost in a restart): abandoned",
                        call_id)
            self.calls.abandoned(call_id, "call_lost").addErrback(self._bug, "abandoning")

    def _ring(self, call: Call, agent_id: str, offer_id: str | None) -> None:
        if not call.waiting or call.cancelled is not None:
            return
        if call.leg is not None and call.leg.state in ("trying", "ringing"):
            self._cancel_leg(call.leg)
        binding = self.calls.binding(agent_id)
        if binding is None:
            log.info("offer of %s to %s: no registered phone", call.call_id, agent_id)
            self.calls.refused(call.call_id, agent_id, errors.REFUSED_UNREACHABLE) \
                .addErrback(self._bug, "refusing")
            return
        flow = self.endpoint.flow_to(binding.source, binding.contact)
        ep = self.endpoint
        rr = [self._record_route(call.caller_flow)]
        if flow.transport != call.caller_flow.transport:
            rr.append(self._record_route(flow))
        drop = translate.count_our_routes(call.txn.request, ep.is_us)
        invite = translate.forwarded(call.txn.request, ep.via(flow), uri=binding.contact,
                                     record_route=rr, drop_routes=drop)
        leg = Leg(agent_id, offer_id, flow, invite)
        call.leg = leg
        log.info("call %s rings %s at %s", call.call_id, agent_id, binding.contact)
        self._seen(leg, "trying")
        leg.txn = ep.request(invite, flow, lambda resp: self._leg_response(call, leg, resp))

    def _record_route(self, flow: Flow) -> str:
        ep = self.endpoint
        port = ep.tcp_port if flow.reliable and ep.tcp_port else ep.udp_port
        return f"<sip:{ep.host}:{port};transport={flow.transport};lr>"

    def _leg_response(self, call: Call, leg: Leg, resp: Response) -> None:
        status = resp.status
        if status < 200:
            leg.provisional = True
            if leg.cancelled and not leg.cancel_sent:
                self._send_cancel(leg)
                return
            if status == errors.TRYING or leg.cancelled or call.leg is not leg:
                return
            leg.state = "ringing"
            self._seen(leg, "early", resp)
            # while the caller hears our queue media, the agent's 18x is not relayed: a 180
            # would make many phones switch to their own ringback tone (docs/phone.md)
            if call.waiting and (self.hold is None or self.hold.answer_of(call.call_id) is None):
                call.txn.respond(translate.without_top_via(resp))
            return
        if status < 300:
            self._leg_answered(call, leg, resp)
            return
        # a final refusal (the ACK was sent by the client transaction)
        was = leg.state
        leg.state = "done"
        if call.leg is leg:
            call.leg = None
        self._seen(leg, "terminated", resp,
                   "cancelled" if leg.cancelled else "rejected")
        if leg.cancelled or was == "done":
            return
        if call.waiting and call.cancelled is None:
            log.info("agent %s's phone answered %d to %s", leg.agent_id, status, call.call_id)
            reason = errors.refusal(status)
            if self.presence is not None and reason == errors.REFUSED_BUSY:
                # busy for calls until the phone is idle (presence.py)
                d = self.calls.refused(call.call_id, leg.agent_id, reason, busy=True)
                d.addCallback(lambda _: self.presence.refused_busy(leg.agent_id))
            else:
                d = self.calls.refused(call.call_id, leg.agent_id, reason)
            d.addErrback(self._bug, "refusing")

    def _leg_answered(self, call: Call, leg: Leg, resp: Response) -> None:
        if leg.ack is not None:  # we hung it up: its 2xx again (our ACK lost), the same ACK
            self.endpoint.send_stateless(leg.ack, leg.flow)
            return
        if leg.state == "answered":  # a retransmitted 2xx: pass it on (§16.7 step 5)
            if call.state == "answered" and call.leg is leg:
                self.endpoint.send(translate.without_top_via(resp).to_bytes(), call.caller_flow)
            return
        if leg.state == "answering":
            return
        if leg.cancelled or call.leg is not leg or not call.waiting \
                or call.cancelled is not None:
            self._hang_up(leg, resp)  # the 2xx crossed our CANCEL
            return
        leg.state = "answering"
        leg.ok = resp
        d = self.calls.answered(call.call_id, leg.agent_id)
        d.addCallbacks(self._connected, self._not_answered, (call, leg), None, (call, leg))
        d.addErrback(self._bug, "connecting a call")

    def _connected(self, task: Any, call: Call, leg: Leg) -> None:
        leg.state = "answered"
        if call.txn.final or call.cancelled is not None:
            # the caller left while the answer was stored: end the agent's side too
            self._hang_up(leg, leg.ok)
            call.state = "over"
            self._forget(call)
            self.calls.ended(call.call_id, errors.ENDED_BY_CALLER).addErrback(self._bug, "end")
            return
        call.state = "answered"
        call.agent_flow = leg.flow
        call.agent_id = leg.agent_id
        self._quiet(call)  # the agent's 200 takes the caller's media: ours stops
        call.txn.respond(translate.without_top_via(leg.ok))
        self._seen(leg, "confirmed", leg.ok)
        log.info("call %s answered by %s", call.call_id, leg.agent_id)

    def _not_answered(self, failure: Any, call: Call, leg: Leg) -> None:
        log.info("answer of %s by %s refused by the core (%s): hanging up the agent leg",
                 call.call_id, leg.agent_id, failure.getErrorMessage())
        leg.state = "done"
        if call.leg is leg:
            call.leg = None
        self._hang_up(leg, leg.ok)

    def _cancel_leg(self, leg: Leg) -> None:
        if leg.cancelled:
            return
        leg.cancelled = True
        if leg.provisional and leg.state in ("trying", "ringing"):
            self._send_cancel(leg)
        elif leg.state == "trying" and leg.txn is not None:
            # no provisional yet: the CANCEL goes when one arrives (§9.1), else timer B ends
            # the transaction; meanwhile the INVITE is not retransmitted, so a phone it has
            # not reached yet (packets lost) does not start ringing for an offer that is over
            leg.txn.stop_retransmitting()

    def _send_cancel(self, leg: Leg) -> None:
        leg.cancel_sent = True
        cancel = translate.cancel_for(leg.invite)
        self.endpoint.request(cancel, leg.flow, lambda resp: None)

    def _hang_up(self, leg: Leg, ok: Response | None) -> None:
        """ACK the leg's 2xx ourselves and BYE it (a caller who will never get it)."""
        if ok is None:
            return
        ep = self.endpoint
        number = leg.invite.cseq.number
        ack = translate.in_dialog(leg.invite, ok, "ACK", ep.via(leg.flow), number)
        ep.send_stateless(ack, leg.flow)
        bye = translate.in_dialog(leg.invite, ok, "BYE", ep.via(leg.flow), number + 1)
        ep.request(bye, leg.flow, lambda resp: None)
        leg.state = "done"
        leg.ack = ack
        self._seen(leg, "terminated", ok, "local-bye")

    # ================================================================ inside the dialog

    def _other_side(self, call: Call, req: Request) -> Flow | None:
        try:
            from_tag = req.from_.tag
        except ParseError:
            return None
        return call.agent_flow if from_tag == call.caller_tag else call.caller_flow

    def _in_dialog(self, txn: ServerTransaction) -> None:
        req = txn.request
        call = self.by_call_id.get(req.call_id)
        if call is None and self.dialer is not None and self.dialer.in_dialog(txn):
            return  # a callback's dialog (dialer.py)
        if call is None or call.state != "answered" or req.method not in DIALOG_METHODS:
            txn.reply(errors.NO_TRANSACTION)
            return
        target = self._other_side(call, req)
        if target is None:
            txn.reply(errors.NO_TRANSACTION)
            return
        by = errors.ENDED_BY_CALLER if target == call.agent_flow else errors.ENDED_BY_AGENT
        drop = translate.count_our_routes(req, self.endpoint.is_us)
        fwd = translate.forwarded(req, self.endpoint.via(target), drop_routes=drop)

        def relay(resp: Response) -> None:
            if resp.status == errors.TRYING and txn.invite:
                return
            txn.respond(translate.without_top_via(resp))

        self.endpoint.request(fwd, target, relay)
        if req.method == "BYE":
            call.state = "over"
            self._forget(call)
            if call.leg is not None:
                self._seen(call.leg, "terminated", None,
                           "remote-bye" if by == errors.ENDED_BY_CALLER else "local-bye")
            log.info("call %s ended by the %s", call.call_id, by)
            self.calls.ended(call.call_id, by).addErrback(self._bug, "ending a call")

    # ================================================================ digits (RFC 4733)

    def digit(self, call_id: str, digit: str) -> None:
        """A digit the caller pressed while queued (media.py). `callback_digit`: the core
        keeps their place as a callback task (calls.keep_place); once committed they hear the
        confirmation and their INVITE ends with 480 (Reason: callback booked), without
        calls.abandoned. A refusal is logged and the caller stays queued."""
        call = self.by_call_id.get(call_id)
        wanted = self.settings.callback_digit
        if call is None or not wanted or digit != wanted or call.keeping \
                or not call.waiting or call.cancelled is not None or call.task_id is None \
                or (call.leg is not None and call.leg.state == "answering"):
            return
        call.keeping = True
        d = self.calls.keep_place(call_id)
        d.addCallbacks(self._kept, self._not_kept, (call,), None, (call,))
        d.addErrback(self._bug, "keeping a caller's place")

    def _kept(self, task: Any, call: Call) -> None:
        if call.state == "over" or call.txn.final:
            return
        log.info("call %s: the caller keeps their place (callback task %s)", call.call_id,
                 getattr(task, "id", task))
        call.state = "over"
        stop_all(call.timers)
        if call.leg is not None and call.leg.state in ("trying", "ringing"):
            self._cancel_leg(call.leg)

        def goodbye(_: Any) -> None:
            self._forget(call)
            call.txn.reply(errors.TEMPORARILY_UNAVAILABLE, CALLBACK_REASON,
                           headers=[("Reason", 'SIP;cause=480;text="callback booked"')])

        d = self.hold.confirm(call.call_id) if self.hold is not None else defer.succeed(None)
        d.addCallback(goodbye).addErrback(self._bug, "ending a kept call")

    def _not_kept(self, failure: Any, call: Call) -> None:
        call.keeping = False
        self._refused(call.caller_flow, "keep", "call %.80s: callback refused (%s): the "
                      "caller stays queued", call.call_id, failure.getErrorMessage())

    # ================================================================ housekeeping

    def _quiet(self, call: Call) -> None:
        """No more timers for the call, and no more queue media."""
        stop_all(call.timers)
        if self.hold is not None:
            self.hold.end(call.call_id)

    def _forget(self, call: Call) -> None:
        self._quiet(call)
        if self.by_call_id.get(call.call_id) is call:
            del self.by_call_id[call.call_id]

    def _seen(self, leg: Leg, state: str, resp: Response | None = None,
              event: str = "") -> None:
        """The agent leg's dialog state, for those who subscribe to the agent (presence.py)."""
        if self.presence is not None:
            self.presence.dialog(leg.agent_id, leg.invite, state, resp, event)

    def stop(self) -> defer.Deferred:
        """Callers still waiting get 503 and their tasks are abandoned (nobody could answer
        them after the restart); answered calls keep going between the phones."""
        if self.presence is not None:
            self.presence.stop()
        waits = []
        for call in list(self.by_call_id.values()):
            self._quiet(call)
            if call.waiting:
                if call.leg is not None:
                    self._cancel_leg(call.leg)
                call.state = "over"
                call.txn.reply(errors.SERVICE_UNAVAILABLE,
                               headers=[("Retry-After", str(errors.RETRY_AFTER_SECONDS))])
                waits.append(self.calls.abandoned(call.call_id, "server_stopping")
                             .addErrback(self._bug, "abandoning at stop"))
        self.by_call_id.clear()
        return defer.DeferredList(waits)

    @staticmethod
    def _bug(failure: Any, what: str) -> None:
        log.error("phone: %s failed: %s", what, failure.getTraceback())
