"""Calls: the phone channel's use cases, shared by the SIP server and the CTI API.

Sits in `dispatcher.service`; the phone edges (channels/phone: sip.py/control.py, cti.py) call it
and never touch the router or the store. It promises:

- a call becomes one phone task, whatever repeats: the task id is derived from the call id, so a
  retransmitted INVITE or a repeated `call.arrived` (even after a restart) finds the same task;
  the caller is the customer identified by their number (one history with their e-mails);
- the phone's answer is the agent's accept (`answered`), a refusal is a reject, the end of the
  call puts the agent in wrap-up (`ended`), a caller who gives up is `abandoned` with the time
  waited; `call.answered` and `call.ended` (talk time) join the task's event log, so handle time
  and service level come from the log; the answer's time is also kept in the task's attributes
  (`answered_at`), for the agent's call timer and the talk time after a restart;
- a call the SIP edge holds is accepted by the phone's answer only: the desk's accept is
  refused with `AnswerOnPhone` (`answered_on_phone`, applied by `Sessions.accept_at_desk`);
- an agent's phone decides whether they can take calls: once `require_devices()` has been called
  (by the phone edge when it starts), an agent takes phone tasks only with a phone account and,
  for a SIP phone, a live registration; a PBX may report an extension busy (`device`), which
  the interruption matrix treats as a call held;
- registrations are stored before the registrar answers, survive restarts, and expire on the
  reactor's clock.
- a queued caller may keep their place (`keep_place`, issue 18): the task stays in its queue
  with its arrival and becomes a callback (dispatcher.domain.callbacks) to the caller's number;
  from then on the caller's dialog is not the task's (`call_id` gives None, its end abandons
  nothing); anonymous callers and calls no longer waiting are refused.

Every Deferred fires after the change is committed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall

from dispatcher.domain import callbacks as cb
from dispatcher.domain import events as ev
from dispatcher.domain.errors import DomainError, DuplicateTask, InvalidValue, OfferNotCurrent
from dispatcher.domain.routing import Outcome
from dispatcher.domain.tasks import Channel, Task, TaskState

from .assignment import Assignment
from .callbacks import Callbacks
from .intake import Intake, phone_identity
from .ports import Binding, PhoneAccount, PhoneStore

log = logging.getLogger(__name__)

DEFAULT_REALM = "switchboard"
TASK_ID_PREFIX = "call-"
TASK_ID_DIGEST_CHARS = 24
SIP_SOURCE = "sip"  # the SIP edge holds the call's dialog (in its process only)
CTI_SOURCE = "cti"  # a PBX holds the call and reports it over the CTI API
SOURCES = (SIP_SOURCE, CTI_SOURCE)
CALL_LOST = "call_lost"  # reason of a SIP call whose dialog died with the process
# Call ids and contacts are stored; keep them to what a SIP header can reasonably hold.
MAX_CALL_ID = 256
ANSWERED_AT = "answered_at"  # the task attribute: when the agent's device answered


class AnswerOnPhone(DomainError):
    """A call that rings the agent's SIP phone is accepted by the phone's answer (its 200 OK,
    `Calls.answered`), never by a button on the desk."""

    code = "answer_on_phone"

    def __init__(self, agent_id: str, task_id: str) -> None:
        super().__init__("answer this call on your phone")
        self.agent_id, self.task_id = agent_id, task_id


def answered_on_phone(task: Task) -> bool:
    """Whether the phone, not the desk, accepts this task: a call the SIP edge holds (the
    SIP accept rule; a PBX's call, `cti`, is accepted on the desk, then routed)."""
    return task.channel is Channel.PHONE and task.attributes.get("source") == SIP_SOURCE


def call_task_id(call_id: str) -> str:
    """The task id of a call: stable across retransmissions and restarts."""
    digest = hashlib.sha256(call_id.encode("utf-8", "surrogateescape")).hexdigest()
    return TASK_ID_PREFIX + digest[:TASK_ID_DIGEST_CHARS]


def digest_ha1(user: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """HA1 of HTTP digest (RFC 7616 §3.4.2, RFC 8760 for SIP): H(user:realm:password)."""
    text = f"{user}:{realm}:{password}".encode()
    if algorithm.upper() == "MD5":
        return hashlib.md5(text, usedforsecurity=False).hexdigest()
    if algorithm.upper() == "SHA-256":
        return hashlib.sha256(text).hexdigest()
    raise InvalidValue(f"unsupported digest algorithm {algorithm!r}")


def make_account(agent_id: str, sip_user: str | None, password: str | None,
                 realm: str = DEFAULT_REALM, extension: str | None = None) -> PhoneAccount:
    """A phone account with both HA1s (MD5 and SHA-256) for a SIP user, or a CTI-only account
    (extension, no SIP user)."""
    if sip_user is not None and not password:
        raise InvalidValue("a SIP user needs a password")
    if sip_user is None and extension is None:
        raise InvalidValue("a phone account needs a SIP user or an extension")
    if sip_user is not None and (not sip_user or any(c in sip_user for c in ':@;<> \t')):
        raise InvalidValue(f"invalid SIP user {sip_user!r}")
    if sip_user is None:
        return PhoneAccount(agent_id, None, realm, None, None, extension)
    return PhoneAccount(agent_id, sip_user, realm,
                        digest_ha1(sip_user, realm, password or "", "MD5"),
                        digest_ha1(sip_user, realm, password or "", "SHA-256"), extension)


class Calls:
    def __init__(self, assignment: Assignment, intake: Intake, phones: PhoneStore) -> None:
        self.assignment = assignment
        self.router = assignment.router
        self.intake = intake
        self.phones = phones
        self._accounts: dict[str, PhoneAccount] = {}  # agent id ->
        self._by_user: dict[str, str] = {}
        self._by_extension: dict[str, str] = {}
        self._bindings: dict[str, Binding] = {}
        self._expiry: dict[str, IDelayedCall] = {}
        self._unreachable_by_pbx: set[str] = set()
        self._answered_at: dict[str, float] = {}  # task id -> when the call was answered
        self._arriving: dict[str, Deferred[Task]] = {}
        self.required = False
        self.callbacks = Callbacks(self)  # the calls to make (callbacks.py)

    def now(self) -> float:
        return self.assignment.now()

    # ------------------------------------------------------------------ start and stop

    def start(self) -> Deferred[None]:
        """Load accounts and bindings; re-arm expiries (drop those that ran out while down)."""
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        for account in await self.phones.list_phone_accounts():
            self._remember(account)
        now = self.now()
        for binding in await self.phones.list_bindings():
            if binding.expires_at <= now or binding.agent_id not in self._accounts:
                await self.phones.remove_binding(binding.agent_id)
                continue
            self._bind(binding)
        await self.callbacks.start()

    def stop(self) -> None:
        self.callbacks.stop()
        for timer in self._expiry.values():
            if timer.active():
                timer.cancel()
        self._expiry.clear()

    def require_devices(self) -> Deferred[Outcome]:
        """From now on an agent takes phone tasks only when their phone can be reached."""
        self.required = True
        self.router.unreachable_at_first = {Channel.PHONE}  # agents added from now on, too
        out = Outcome()
        for agent_id, agent in self.router.agents.items():
            if Channel.PHONE in agent.channels:
                out.merge(self.router.set_device(
                    agent_id, Channel.PHONE, self.now(), reachable=self._reachable(agent_id)))
        return self.assignment.apply(out)

    # ------------------------------------------------------------------ phone directory

    def account(self, sip_user: str) -> PhoneAccount | None:
        agent_id = self._by_user.get(sip_user)
        return None if agent_id is None else self._accounts[agent_id]

    def account_of(self, agent_id: str) -> PhoneAccount | None:
        return self._accounts.get(agent_id)

    def agent_by_extension(self, extension: str) -> str | None:
        return self._by_extension.get(extension)

    def accounts(self) -> list[PhoneAccount]:
        return [self._accounts[k] for k in sorted(self._accounts)]

    def reload_accounts(self, accounts: list[PhoneAccount]) -> None:
        """The phone directory is now `accounts` (dispatcher.service.configuration applies a
        change); a removed account's registration lapses with its expiry."""
        for agent_id in list(self._accounts):
            self._forget_account(agent_id)
        for account in accounts:
            self._remember(account)

    def _remember(self, account: PhoneAccount) -> None:
        self._forget_account(account.agent_id)
        self._accounts[account.agent_id] = account
        if account.sip_user is not None:
            self._by_user[account.sip_user] = account.agent_id
        if account.extension is not None:
            self._by_extension[account.extension] = account.agent_id

    def _forget_account(self, agent_id: str) -> None:
        old = self._accounts.pop(agent_id, None)
        if old is not None:
            self._by_user.pop(old.sip_user or "", None)
            self._by_extension.pop(old.extension or "", None)

    # ------------------------------------------------------------------ registrar

    def binding(self, agent_id: str) -> Binding | None:
        return self._bindings.get(agent_id)

    def bindings(self) -> list[Binding]:
        return [self._bindings[k] for k in sorted(self._bindings)]

    def register(self, agent_id: str, contact: str, expires_in: float, source: str,
                 call_id: str, cseq: int) -> Deferred[Binding]:
        """Store the agent's contact (the latest wins), then make them reachable by phone."""
        if agent_id not in self._accounts:
            return fail(InvalidValue(f"agent {agent_id} has no phone account"))
        if expires_in <= 0:
            return fail(InvalidValue("a registration needs a positive expiry"))
        binding = Binding(agent_id, contact, self.now() + expires_in, source, call_id[:MAX_CALL_ID],
                          int(cseq))
        return ensureDeferred(self._register(binding))

    async def _register(self, binding: Binding) -> Binding:
        await self.phones.put_binding(binding)
        self._bind(binding)
        await self._device_changed(binding.agent_id)
        return binding

    def unregister(self, agent_id: str) -> Deferred[None]:
        return ensureDeferred(self._unregister(agent_id))

    async def _unregister(self, agent_id: str) -> None:
        await self.phones.remove_binding(agent_id)
        self._unbind(agent_id)
        await self._device_changed(agent_id)

    def _bind(self, binding: Binding) -> None:
        self._unbind(binding.agent_id)
        self._bindings[binding.agent_id] = binding
        delay = max(0.0, binding.expires_at - self.now())
        self._expiry[binding.agent_id] = self.assignment.clock.callLater(
            delay, self._expire, binding)

    def _unbind(self, agent_id: str) -> None:
        self._bindings.pop(agent_id, None)
        timer = self._expiry.pop(agent_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _expire(self, binding: Binding) -> None:
        if self._bindings.get(binding.agent_id) is not binding:
            return
        self._expiry.pop(binding.agent_id, None)
        log.info("phone registration of %s expired (%s)", binding.agent_id, binding.contact)
        d = ensureDeferred(self._unregister(binding.agent_id))
        d.addErrback(lambda f: log.error("expiring %s: %s", binding.agent_id, f.getErrorMessage()))

    def _reachable(self, agent_id: str) -> bool:
        account = self._accounts.get(agent_id)
        if account is None:
            return False
        if account.sip_user is not None:
            return agent_id in self._bindings
        return agent_id not in self._unreachable_by_pbx

    async def _device_changed(self, agent_id: str) -> None:
        if not self.required or agent_id not in self.router.agents:
            return
        out = self.router.set_device(agent_id, Channel.PHONE, self.now(),
                                     reachable=self._reachable(agent_id))
        await self.assignment.apply(out)

    # ------------------------------------------------------------------ calls

    def task_id(self, call_id: str) -> str | None:
        task_id = call_task_id(call_id)
        return task_id if task_id in self.router.tasks else None

    def call_id(self, task_id: str) -> str | None:
        task = self.router.tasks.get(task_id)
        return None if task is None else task.attributes.get("call_id")

    def arrived(self, call_id: str, caller: str, queue: str, *, source: str,
                attributes: dict[str, Any] | None = None, priority: int | None = None,
                skills: Mapping[str, int] | None = None) -> Deferred[Task]:
        """A call waits in `queue`: one phone task per call id, routed and committed with its
        routing (Intake.submit).
        `skills`: levels this call needs on top of the queue's requirement (the IVR's
        choice, a VIP line...)."""
        if not call_id or len(call_id) > MAX_CALL_ID:
            return fail(InvalidValue("a call needs an id of 1-256 characters"))
        if source not in SOURCES:
            return fail(InvalidValue(f"unknown call source {source!r}"))
        task_id = call_task_id(call_id)
        # A retransmission while the first is being stored waits for its commit: the router
        # holds the task already then (Intake.submit routes before it commits).
        pending = self._arriving.get(call_id)
        if pending is not None:
            waiter: Deferred[Task] = Deferred()
            pending.addBoth(lambda r: (waiter.callback(r) if isinstance(r, Task)
                                       else waiter.errback(r)) or r)
            return waiter
        if task_id in self.router.tasks:
            return succeed(self.router.tasks[task_id])
        try:
            identity = phone_identity(caller) if caller else None
        except DomainError:
            identity = None  # an anonymous or non-numeric caller: a task without a customer
        attrs = dict(attributes or {})
        attrs.pop(ANSWERED_AT, None)  # set here when the call is answered, by nobody else
        attrs.update({"call_id": call_id, "caller": caller, "source": source})
        d = self.intake.submit(Channel.PHONE, queue, identity, skills=skills,
                               priority=priority, attributes=attrs, task_id=task_id)
        d.addErrback(self._already_there, task_id)
        self._arriving[call_id] = d

        def done(result):
            self._arriving.pop(call_id, None)
            return result

        d.addBoth(done)
        return d

    def _already_there(self, failure, task_id: str):
        failure.trap(DuplicateTask)
        task = self.router.tasks.get(task_id)
        if task is None:  # the call was stored before, and has ended since
            raise InvalidValue("this call has already ended")
        return task

    def _call_task(self, call_id: str) -> Task | None:
        return self.router.tasks.get(call_task_id(call_id))

    def answered(self, call_id: str, agent_id: str) -> Deferred[Task]:
        """The agent's device answered: accept their pending offer for this call (a SIP phone's
        200 OK), or note the answer of a call already assigned to them (a PBX's report)."""
        task = self._call_task(call_id)
        if task is None:
            return fail(OfferNotCurrent(f"no waiting call {call_id!r}"))
        if cb.is_callback(task.attributes):  # the caller kept their place: not this dialog's
            return fail(OfferNotCurrent(f"call {call_id!r} is a callback now"))
        now = self.now()
        try:
            if task.state is TaskState.OFFERED:
                offer = self.router.pending_offer(agent_id, task.id)
                if offer is None:
                    raise OfferNotCurrent(f"call {call_id!r} is not offered to {agent_id}")
                out = self.router.accept(agent_id, offer.id, now)
            elif task.state is TaskState.ASSIGNED and task.agent_id == agent_id:
                out = Outcome()
                if task.id in self._answered_at:
                    return succeed(task)
            else:
                raise OfferNotCurrent(f"call {call_id!r} is {task.state.value}, "
                                      f"not offered to {agent_id}")
        except DomainError as exc:
            return fail(exc)
        self.note_answer(task, now)
        out.touch(task)
        out.events.append(ev.Event(ev.CALL_ANSWERED, now, task.id, agent_id,
                                   ev.agent_actor(agent_id), {"agent_id": agent_id}))
        d = self.assignment.apply(out)
        d.addCallback(lambda _: task)
        return d

    def note_answer(self, task: Task, now: float) -> None:
        """Keep when the agent's call began (the call timer, the talk time of `call.ended`)."""
        self._answered_at[task.id] = now
        task.attributes = {**task.attributes, ANSWERED_AT: now}

    def refused(self, call_id: str, agent_id: str, reason: str,
                busy: bool = False) -> Deferred[Outcome]:
        """The agent's phone refused the call (486 Busy Here, 603 Decline): a reject. `busy`:
        the phone is in a call of its own: it is engaged too (as `device(engaged=True)`), in
        the same decision, so no other call rings it meanwhile; `device(engaged=False)` ends
        it (the phone edge: when the phone is idle again)."""
        task = self._call_task(call_id)
        agent = self.router.agents.get(agent_id)
        if task is None or agent is None or agent.offer_task_id != task.id:
            return succeed(Outcome())  # the offer ended already: nothing to refuse
        try:
            out = self.router.reject(agent_id, agent.offer_id or "", self.now(), reason,
                                     engaged=busy)
        except DomainError as exc:
            return fail(exc)
        return self.assignment.apply(out)

    def ended(self, call_id: str, by: str) -> Deferred[Outcome]:
        """The call is over. Talking to an agent: they go to wrap-up; still waiting: the caller
        abandoned. An end already seen changes nothing."""
        task = self._call_task(call_id)
        if task is None or task.state in (TaskState.WRAP_UP, TaskState.COMPLETED,
                                          TaskState.CANCELLED, TaskState.ABANDONED) \
                or cb.is_callback(task.attributes):  # the caller's dialog of a kept place
            return succeed(Outcome())
        if task.state in (TaskState.QUEUED, TaskState.OFFERED):
            return self.abandoned(call_id, reason=f"ended_by_{by}")
        try:
            out = self.end_outcome(task, by, self.now())
        except DomainError as exc:
            return fail(exc)
        return self.assignment.apply(out)

    def end_outcome(self, task: Task, by: str, ended_at: float, now: float | None = None,
                    seen: bool = True) -> Outcome:
        """What the end of assigned `task`'s call at `ended_at` changes, not yet applied: its
        agent starts wrap-up (at `now`, by default `ended_at`), `call.ended` logs the talk
        time since the answer (none when the end was not `seen`: the call went on out of our
        sight). Raises DomainError."""
        agent_id = task.agent_id or ""
        answered = self._answered_at.pop(task.id, None)
        if answered is None:  # answered before a restart
            kept = task.attributes.get(ANSWERED_AT)
            answered = kept if isinstance(kept, int | float) and not isinstance(kept, bool) \
                else None
        out = self.router.wrap_up(agent_id, task.id, ended_at if now is None else now)
        talk = None if answered is None or not seen else round(max(0.0, ended_at - answered), 3)
        out.events.append(ev.Event(ev.CALL_ENDED, ended_at, task.id, agent_id, ev.SYSTEM,
                                   {"by": by, "talk_seconds": talk}))
        return out

    def abandoned(self, call_id: str, reason: str = "caller_cancel") -> Deferred[Outcome]:
        """The caller gave up while waiting (CANCEL, hang-up, time limit in queue). A call
        whose caller kept their place (`keep_place`) is a callback now: its end abandons
        nothing."""
        task = self._call_task(call_id)
        if task is None or task.state not in (TaskState.QUEUED, TaskState.OFFERED) \
                or cb.is_callback(task.attributes):
            return succeed(Outcome())
        try:
            out = self.abandon_outcome(task, reason, self.now())
        except DomainError as exc:
            return fail(exc)
        return self.assignment.apply(out)

    def abandon_outcome(self, task: Task, reason: str, at: float) -> Outcome:
        """What the caller's leaving at `at` changes, not yet applied: the task is abandoned
        with the time waited and `reason`. A call assigned but never answered (accepted on the
        console while the phone rang) is taken back from its agent first. Raises
        DomainError."""
        out = Outcome()
        if task.state is TaskState.ASSIGNED:
            out.merge(self.router.requeue(task.id, at, reason))
        more = self.router.abandon(task.id, at)
        for event in more.events:
            if event.kind == ev.TASK_ABANDONED:
                event.data = {**event.data, "reason": reason}
        out.merge(more)
        return out

    def keep_place(self, call_id: str) -> Deferred[Task]:
        """The queued caller asked to be called back: their call's task stays in its queue with
        its original age (arrival unchanged) and becomes a callback task to the caller's number;
        the caller's SIP dialog may then end without the task being abandoned. Fires after the
        commit; fails (DomainError subclass) when the call is not waiting or has no usable
        number (CallNotWaiting, NoCallbackNumber). Asked again, fires with the same task."""
        task = self._call_task(call_id)
        if task is None:
            return fail(cb.CallNotWaiting(call_id, "unknown"))
        if cb.is_callback(task.attributes):
            return succeed(task)
        if task.state not in (TaskState.QUEUED, TaskState.OFFERED):
            return fail(cb.CallNotWaiting(call_id, task.state.value))
        now = self.now()
        try:
            request = cb.request(task.attributes.get("caller"), "ivr", now,
                                 max_attempts=self.callbacks.attempts)
        except DomainError as exc:
            return fail(exc)
        attrs = dict(task.attributes)
        # The dialog is no longer what is offered: without `call_id` the SIP edge rings no
        # phone with it (`call_id(task_id)`), and its end abandons nothing (`abandoned`).
        request["call_id"] = attrs.pop("call_id", call_id)
        attrs.update({"source": cb.SOURCE, cb.ATTRIBUTE: request})
        task.attributes = attrs
        out = Outcome()
        out.touch(task)
        out.events.append(ev.Event(ev.CALLBACK_REQUESTED, now, task.id, data={
            "number": request["number"], "origin": "ivr", "not_before": None,
            "not_after": None, "kept": True, "waited": round(now - task.created_at, 3)}))
        try:  # an offer ringing an agent's phone with the dialog is taken back (and re-placed)
            out.merge(self.router.withdraw(task.id, now, "callback_requested"))
        except DomainError as exc:
            return fail(exc)
        d = self.assignment.apply(out)
        d.addCallback(lambda _: task)
        return d

    def device(self, agent_id: str, *, engaged: bool | None = None,
               reachable: bool | None = None) -> Deferred[Outcome]:
        """What a PBX says of the agent's phone: in a call outside our routing (`engaged`), or
        not reachable at all. A SIP phone's reachability comes from its registration."""
        if agent_id not in self.router.agents:
            return fail(InvalidValue(f"unknown agent {agent_id!r}"))
        if reachable is not None:
            (self._unreachable_by_pbx.discard if reachable
             else self._unreachable_by_pbx.add)(agent_id)
        # Whatever the PBX said, what decides is the account and its devices (an agent added
        # after devices were required starts unreachable until their phone is heard of).
        reachable = self._reachable(agent_id) if self.required else None
        try:
            out = self.router.set_device(agent_id, Channel.PHONE, self.now(),
                                         reachable=reachable, engaged=engaged)
        except DomainError as exc:
            return fail(exc)
        return self.assignment.apply(out)

