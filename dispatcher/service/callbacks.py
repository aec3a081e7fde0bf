"""Callbacks: calls to make, waiting in the queues beside the calls held (issue 18, item 2).

Sits in `dispatcher.service` beside `calls.py` (which owns one `Callbacks`: `calls.callbacks`);
the phone edge's dialer (channels/phone/dialer.py), its CTI (cti.py), the REST API and the web
form call it and never touch the router. A callback task is a phone task whose attributes say
`source = "callback"` (dispatcher.domain.callbacks). What it promises:

- `request`: a web or API callback becomes one phone task of its queue, its age starting at
  its window's start; before the window opens the router holds it aside (`Router.park`) and a
  timer on the reactor's clock puts it in its place then (re-armed at start for every parked
  task). The number joins the customer's identities: with an e-mail address of a known
  customer the task is theirs and the number is added to their card (unless it belongs to
  another customer: then the number's customer is used; supervisors merge); else the
  customer is the number's (created when new), and the address is added when nobody has it.
- the agent side (`agent_answered`, `dialled`, `reached`, `not_reached`, `ended`,
  `agent_lost`): an agent's phone answering is their accept (as `Calls.answered`); each dial
  of the customer is an attempt (`callback.dialled`, counted in the task's callback map); the
  customer's answer is `callback.reached` (and `call.answered`: handle time and service level
  come from the log as for calls); their no answer is `callback.no_answer`, then either
  `callback.retry` (the task waits again in its place, held aside `retry_delay` seconds) or,
  when no attempt is left or the window is over, the task is cancelled `callback_not_reached`.
  The end of a reached callback puts the agent in wrap-up as a call's end does.

Every Deferred fires after the change is committed; rules fail with DomainError subclasses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall

from dispatcher.domain import callbacks as cb
from dispatcher.domain import events as ev
from dispatcher.domain.errors import DomainError, InvalidValue, OfferNotCurrent, UnknownTask
from dispatcher.domain.routing import Outcome
from dispatcher.domain.tasks import Channel, Task, TaskState

from .intake import email_identity, phone_identity
from .ports import Identity, IdentityTaken
from .slices import slices

if TYPE_CHECKING:
    from .calls import Calls

log = logging.getLogger(__name__)

DEFAULT_RETRY_DELAY = 300.0
MAX_NAME_CHARS = 200


class Callbacks:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.assignment = calls.assignment
        self.router = calls.router
        self.intake = calls.intake
        self.store = calls.intake.store
        self.retry_delay = DEFAULT_RETRY_DELAY  # `[phone] callback_retry_delay`
        self.attempts = cb.DEFAULT_ATTEMPTS  # `[phone] callback_attempts`
        self._timers: dict[str, IDelayedCall] = {}
        self._window_ends: dict[str, IDelayedCall] = {}

    def configure(self, *, attempts: int | None = None, retry_delay: float | None = None
                  ) -> None:
        """The phone edge's settings (`[phone] callback_attempts`, `callback_retry_delay`)."""
        if attempts is not None:
            self.attempts = int(attempts)
        if retry_delay is not None:
            self.retry_delay = float(retry_delay)

    def now(self) -> float:
        return self.assignment.now()

    # ------------------------------------------------------------------ timers

    def start(self) -> Deferred[Outcome]:
        """After the router's restore: arm the timer of every task it holds aside and the end
        of every waiting callback's window; settle the callbacks the SIP dialer was making
        when the previous process stopped (its dialogs died with it): one not reached yet goes
        back to its queue (`task.requeued` `dialer_restarted`, no attempt lost), one reached
        is logged as ended (`call.ended` by `call_lost`, no talk time) and its agent starts
        wrap-up. A PBX's callbacks are left to the PBX. The open tasks are looked at in slices,
        the reactor running between two (service/slices.py)."""
        return ensureDeferred(self._start())

    async def _start(self) -> Outcome:
        for task_id, until in self.router.parked().items():
            self._arm(task_id, until)
        out = Outcome()
        now = self.now()
        async for chunk in slices(self.assignment.clock, list(self.router.tasks.values())):
            self._settle(chunk, now, out)
        return await self.assignment.apply(out)

    def _settle(self, tasks: list[Task], now: float, out: Outcome) -> None:
        """`start`'s work on some open tasks: callbacks' windows armed, the dialer's settled."""
        for task in tasks:
            if not (task.may_hold(cb.ATTRIBUTE) and cb.is_callback(task.attributes)):
                continue
            self._arm_window(task)
            account = self.calls.account_of(task.agent_id or "")
            if task.state is not TaskState.ASSIGNED or account is None \
                    or account.sip_user is None:
                continue
            try:
                if task.attributes.get("answered_at") is None:
                    out.merge(self.router.requeue(task.id, now, "dialer_restarted"))
                else:
                    out.merge(self.calls.end_outcome(task, "call_lost", now, seen=False))
            except DomainError as exc:
                log.error("callback %s not settled after the restart: %s", task.id, exc)

    def stop(self) -> None:
        for timer in [*self._timers.values(), *self._window_ends.values()]:
            if timer.active():
                timer.cancel()
        self._timers.clear()
        self._window_ends.clear()

    def _arm_window(self, task: Task) -> None:
        end = (cb.callback_of(task.attributes) or {}).get("not_after")
        if isinstance(end, int | float) and task.id not in self._window_ends:
            self._window_ends[task.id] = self.assignment.clock.callLater(
                max(0.0, end - self.now()), self._window_over, task.id)

    def _window_over(self, task_id: str) -> None:
        """The window ended: a callback still waiting (not with an agent) ends not reached."""
        self._window_ends.pop(task_id, None)
        task = self.task(task_id)
        if task is None or task.state not in (TaskState.QUEUED, TaskState.OFFERED):
            return
        now = self.now()
        request = task.attributes[cb.ATTRIBUTE]
        out = Outcome()
        out.events.append(ev.Event(ev.CALLBACK_NO_ANSWER, now, task.id, None, ev.SYSTEM, {
            "number": request.get("number"), "attempt": request.get("attempts", 0),
            "reason": "window_over", "final": True}))
        out.merge(self.router.cancel(task.id, now, cb.NOT_REACHED))
        self.assignment.apply(out).addErrback(
            lambda f: log.error("callback %s past its window: %s", task_id,
                                f.getErrorMessage()))

    def _arm(self, task_id: str, until: float) -> None:
        old = self._timers.pop(task_id, None)
        if old is not None and old.active():
            old.cancel()
        delay = max(0.0, until - self.now())
        self._timers[task_id] = self.assignment.clock.callLater(delay, self._due, task_id)

    def _due(self, task_id: str) -> None:
        self._timers.pop(task_id, None)
        out = self.router.unpark(task_id, self.now())
        self.assignment.apply(out).addErrback(
            lambda f: log.error("callback %s back in its queue: %s", task_id,
                                f.getErrorMessage()))

    # ------------------------------------------------------------------ requests

    def request(self, number: str, queue: str, *, origin: str = "api",
                not_before: float | None = None, not_after: float | None = None,
                name: str = "", email: str | None = None, attempts: int | None = None,
                note: str = "", actor: str = ev.SYSTEM,
                vouched: bool = False) -> Deferred[Task]:
        """A web or API callback: one phone task of `queue` to call `number`, within the
        window when one is given (`actor`: who asked, kept as `submitted_by`). Fires with the
        task once committed (and routed). What a web visitor types is not proof of who they
        are: a web callback changes no existing customer's identities, unless `vouched` (the
        form's own mail of the same submission created the address's customer)."""
        return ensureDeferred(self._request(number, queue, origin, not_before, not_after,
                                            name, email, attempts, note, actor, vouched))

    async def _request(self, number: str, queue: str, origin: str, not_before: float | None,
                       not_after: float | None, name: str, email: str | None,
                       attempts: int | None, note: str, actor: str, vouched: bool) -> Task:
        if origin not in ("web", "api"):
            raise InvalidValue("a requested callback comes from the web or the api")
        now = self.now()
        request = cb.request(number, origin, now, not_before=not_before, not_after=not_after,
                             max_attempts=self.attempts if attempts is None else attempts)
        phone = phone_identity(request["number"])
        mail = email_identity(email) if email else None
        name = " ".join(str(name or "").split())[:MAX_NAME_CHARS]
        attrs: dict[str, Any] = {"source": cb.SOURCE, cb.ATTRIBUTE: request,
                                 "caller": request["number"], "submitted_by": actor}
        if name:
            attrs["caller_name"] = name
        if note:
            attrs["note"] = str(note)[:1000]
        arrival = cb.arrival(request, now)
        if arrival > now:
            attrs[cb.NOT_BEFORE] = arrival
        # Who the caller is: the API's integrator is authenticated, a web visitor is not.
        # Their address and number link to a customer already known only when the API says so
        # or when that customer is the one this same form submission created (`vouched`);
        # otherwise anyone could tie their number to somebody else's history.
        trusted = origin == "api" or vouched
        identity = phone
        owner = await self.store.find_customer(phone)
        known = None if mail is None else await self.store.find_customer(mail)
        if (trusted and known is not None and mail is not None
                and (owner is None or owner.id == known.id)):
            identity = mail  # the task is the known customer's; the number joins them
        task = self.intake.draft(Channel.PHONE, queue, attributes=attrs)
        task.created_at = task.step_started_at = task.updated_at = arrival
        created = self.intake.created(task, identity)
        created.at = now
        requested = ev.Event(ev.CALLBACK_REQUESTED, now, task.id, data={
            "number": request["number"], "origin": origin, "not_before": request["not_before"],
            "not_after": request["not_after"], "kept": False})
        task.customer_id = await self.store.create_task(task, identity, name,
                                                        [created, requested])
        if trusted or owner is None:  # a card this request made may take the address too
            joins = [phone] + ([mail] if mail is not None and (trusted or known is None)
                               else [])
            await self._join(task, joins, now)
        self.intake.route(task)
        if task.id in self.router.parked():
            self._arm(task.id, arrival)
        self._arm_window(task)
        return task

    async def _join(self, task: Task, identities: list[Identity], now: float) -> None:
        """Add the identities nobody has to the task's customer (one history)."""
        customer = await self.store.get_customer(task.customer_id or "")
        if customer is None:
            return
        new = []
        for identity in identities:
            if identity in customer.identities:
                continue
            owner = await self.store.find_customer(identity)
            if owner is None:
                new.append(identity)
        if not new:
            return
        event = ev.Event(ev.CUSTOMER_CHANGED, now, task.id, None, ev.SYSTEM, {
            "customer_id": customer.id, "name": customer.name, "was": customer.name,
            "added": [{"kind": i.kind, "value": i.value} for i in new], "removed": [],
            "by": "callback"})
        try:
            await self.store.edit_customer(customer.id, customer.name,
                                           (*customer.identities, *new), [event])
        except IdentityTaken as exc:  # taken meanwhile: the two are for a supervisor to merge
            log.info("callback %s: %s", task.id, exc)

    # ------------------------------------------------------------------ the agent's side

    def task(self, task_id: str) -> Task | None:
        """The open callback task `task_id`, or None."""
        task = self.router.tasks.get(task_id)
        return task if task is not None and cb.is_callback(task.attributes) else None

    def _callback(self, task_id: str) -> tuple[Task, dict[str, Any]]:
        task = self.task(task_id)
        if task is None:
            raise UnknownTask(task_id)
        return task, dict(task.attributes[cb.ATTRIBUTE])

    def agent_answered(self, task_id: str, agent_id: str) -> Deferred[Task]:
        """The agent's phone answered the callback's first leg: their accept (a pending offer)
        or nothing more (accepted on the desk already)."""
        try:
            task, _ = self._callback(task_id)
            if task.state is TaskState.OFFERED:
                offer = self.router.pending_offer(agent_id, task.id)
                if offer is None:
                    raise OfferNotCurrent(f"callback {task_id} is not offered to {agent_id}")
                out = self.router.accept(agent_id, offer.id, self.now())
            elif task.state is TaskState.ASSIGNED and task.agent_id == agent_id:
                return succeed(task)
            else:
                raise OfferNotCurrent(f"callback {task_id} is {task.state.value}, "
                                      f"not offered to {agent_id}")
        except DomainError as exc:
            return fail(exc)
        return self.assignment.apply(out).addCallback(lambda _: task)

    def dialled(self, task_id: str, agent_id: str, via: str) -> Deferred[dict[str, Any]]:
        """The customer's number is being dialled for the agent holding the task: one more
        attempt (`callback.dialled`). Fires with the callback map."""
        try:
            task, request = self._callback(task_id)
            self._held_by(task, agent_id)
        except DomainError as exc:
            return fail(exc)
        now = self.now()
        request = cb.attempt_made(request)
        task.attributes = {**task.attributes, cb.ATTRIBUTE: request}
        out = Outcome()
        out.touch(task)
        out.events.append(ev.Event(ev.CALLBACK_DIALLED, now, task.id, agent_id,
                                   ev.agent_actor(agent_id), {
                                       "number": request["number"],
                                       "attempt": request["attempts"], "agent_id": agent_id,
                                       "via": via}))
        return self.assignment.apply(out).addCallback(lambda _: request)

    def reached(self, task_id: str, agent_id: str) -> Deferred[Task]:
        """The customer answered: the agent talks to them (`callback.reached`,
        `call.answered`)."""
        try:
            task, request = self._callback(task_id)
            self._held_by(task, agent_id)
        except DomainError as exc:
            return fail(exc)
        if task.attributes.get("answered_at") is not None:
            return succeed(task)
        now = self.now()
        self.calls.note_answer(task, now)
        out = Outcome()
        out.touch(task)
        out.events.append(ev.Event(ev.CALLBACK_REACHED, now, task.id, agent_id, ev.SYSTEM, {
            "number": request["number"], "attempt": request.get("attempts", 0),
            "agent_id": agent_id}))
        out.events.append(ev.Event(ev.CALL_ANSWERED, now, task.id, agent_id,
                                   ev.agent_actor(agent_id), {"agent_id": agent_id}))
        return self.assignment.apply(out).addCallback(lambda _: task)

    def not_reached(self, task_id: str, agent_id: str, reason: str) -> Deferred[Outcome]:
        """The customer did not answer (no_answer, busy, timeout, failed): logged; the task
        waits again in its place and is tried after `retry_delay`, or, with no attempt left
        or its window over, ends as not reached (cancelled `callback_not_reached`)."""
        try:
            task, request = self._callback(task_id)
            self._held_by(task, agent_id)
        except DomainError as exc:
            return fail(exc)
        now = self.now()
        retry_at = now + self.retry_delay
        out = Outcome()
        again = cb.may_retry(request, retry_at)
        out.events.append(ev.Event(ev.CALLBACK_NO_ANSWER, now, task.id, agent_id, ev.SYSTEM, {
            "number": request["number"], "attempt": request.get("attempts", 0),
            "reason": reason, "final": not again}))
        try:
            if again:
                task.attributes = {**task.attributes, cb.NOT_BEFORE: retry_at}
                out.events.append(ev.Event(ev.CALLBACK_RETRY, now, task.id, agent_id, ev.SYSTEM,
                                           {"attempt": int(request.get("attempts", 0)) + 1,
                                            "at": retry_at}))
                out.merge(self.router.park(task.id, retry_at, now, reason="callback_retry"))
                self._arm(task.id, retry_at)
            else:
                out.merge(self.router.cancel(task.id, now, cb.NOT_REACHED))
        except DomainError as exc:
            return fail(exc)
        out.touch(task)
        return self.assignment.apply(out)

    def ended(self, task_id: str, by: str) -> Deferred[Outcome]:
        """The reached callback's call is over: its agent starts wrap-up (`call.ended`)."""
        task = self.task(task_id)
        if task is None or task.state is not TaskState.ASSIGNED:
            return succeed(Outcome())
        try:
            out = self.calls.end_outcome(task, by, self.now())
        except DomainError as exc:
            return fail(exc)
        return self.assignment.apply(out)

    def refused(self, task_id: str, agent_id: str, reason: str) -> Deferred[Outcome]:
        """The agent's phone refused the callback's first leg (486, 603, unreachable): a
        reject of their pending offer; a callback they accepted on the desk goes back to its
        queue (`agent_lost`). Nothing when neither."""
        task = self.task(task_id)
        agent = self.router.agents.get(agent_id)
        if task is None or agent is None:
            return succeed(Outcome())
        if agent.offer_task_id != task.id:
            return self.agent_lost(task_id, agent_id, reason)
        try:
            out = self.router.reject(agent_id, agent.offer_id or "", self.now(), reason)
        except DomainError as exc:
            return fail(exc)
        return self.assignment.apply(out)

    def agent_lost(self, task_id: str, agent_id: str, reason: str) -> Deferred[Outcome]:
        """The agent's leg failed after their accept on the desk (their phone did not answer,
        or hung up before the customer was dialled): the task waits again in its place
        (`task.requeued`), never offered back to that agent. Nothing for a task they no longer
        hold."""
        task = self.task(task_id)
        if task is None or task.state is not TaskState.ASSIGNED or task.agent_id != agent_id:
            return succeed(Outcome())
        try:
            out = self.router.take_back(task_id, self.now(), ev.SYSTEM, reason)
        except DomainError as exc:
            return fail(exc)
        return self.assignment.apply(out)

    @staticmethod
    def _held_by(task: Task, agent_id: str) -> None:
        if task.state is not TaskState.ASSIGNED or task.agent_id != agent_id:
            raise OfferNotCurrent(f"callback {task.id} is {task.state.value}, "
                                  f"not held by {agent_id}")
