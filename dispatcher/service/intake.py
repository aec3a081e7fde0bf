"""Intake: a new task enters the dispatcher, is routed, and is committed with its routing in
one transaction before anyone hears of it.

`Intake.submit` identifies the customer, computes the e-mail deadline from the queue's rule and
business calendar, keeps the task's own priority (0 unless the edge names one: the queue's
priority is added by the router when it orders tasks, and only there), gives a call the
caller's number (`attributes.caller`, from the phone identity, unless the edge named the
caller), routes the task in memory (queued, or offered to the best agent), then commits the
task's row as routed with its `task.created` event and its routing's events in one
transaction, and only then announces the outcome (the offer reaches the agent) and fires its
Deferred with the stored task: an edge that acknowledges the outside world (SMTP 250, SIP 200,
HTTP 2xx) waits for it. One commit per new task, not two (the intake's, then the offer's): an
offer waits for one transaction. When that transaction fails, nothing was announced and the
router lets the task go (`Assignment.forget`): the agent it was offered to is free again.

Every new task of every channel is drafted, committed and routed here, once: `submit` for the
simple case, and for a channel that prepares more before the commit (e-mail: request number,
codification, acknowledgement) two steps, `draft` (queue checks, priority, skills, the
deadline rule), then `commit_routed` (as `submit`: routed, then the `task.created` event, the
channel's own events, messages and outbox rows and the routing's events in one transaction,
then announced). `dispatcher.service.mail` uses them. An e-mail's request number is not known
before its commit: the store takes it in the storing transaction and the channel's
`numbered(number, last_ack)` makes the rows that name it (ports.py `Store.create_mail_task`:
`last_ack`, when the sender the channel named was last acknowledged, read in that same
transaction); no process counts numbers. The router then holds a copy of the draft, so that
`numbered`, which runs on the store's thread, reads only the draft, which nobody changes any
more; the row stored is that copy as routed, with the attributes `numbered` gave (the request
number), which the router's copy takes after the commit, before the offer is announced.

A new e-mail that Review's automatic mode may answer is not routed before its commit: `commit`
stores it unrouted and `route` hands it to the router afterwards, in a transaction of its own,
unless the automatic mode took it (mail.py).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from dispatcher.domain import events as ev
from dispatcher.domain.agents import check_skills
from dispatcher.domain.deadlines import ALWAYS_OPEN, BusinessCalendar, DeadlineRule, parse_rule
from dispatcher.domain.errors import DomainError, InvalidValue, QueueDisabled, UnknownQueue
from dispatcher.domain.tasks import (
    DEFAULT_PRIORITY,
    MAX_PRIORITY,
    MIN_PRIORITY,
    Channel,
    Task,
    TaskState,
    compact,
)

from .assignment import Assignment
from .ports import (
    Changes,
    Identity,
    MailMessage,
    NewMail,
    Numbering,
    OutboxItem,
    Store,
    StoredMail,
)

log = logging.getLogger(__name__)
_PHONE_KEEP = re.compile(r"[^0-9+]")
CALLER = "caller"  # the attribute of a phone task with the caller's number
_T = TypeVar("_T")


def email_identity(address: str) -> Identity:
    """An e-mail identity: the address, trimmed and lower-cased."""
    value = address.strip().lower()
    if "@" not in value or len(value) > 320:
        raise InvalidValue(f"not an e-mail address: {address!r}")
    return Identity("email", value)


def phone_identity(number: str) -> Identity:
    """A phone identity: digits, with a leading '+' kept when given."""
    value = _PHONE_KEEP.sub("", number.strip())
    value = value[:1] + value[1:].replace("+", "")
    if not value.lstrip("+"):
        raise InvalidValue(f"not a phone number: {number!r}")
    return Identity("phone", value)


@functools.lru_cache(maxsize=64)
def _rule(spec: str) -> DeadlineRule:
    """A queue's deadline rule, parsed once per spec (read for every new e-mail)."""
    return parse_rule(spec)


def new_task_id() -> str:
    # 128 random bits as 32 hex digits, as uuid4().hex gave, at a tenth of its cost (uuid.UUID's
    # constructor was half of drafting a task).
    return os.urandom(16).hex()


def _after(created: ev.Event, numbered: Numbering) -> Numbering:
    """`numbered` with the `task.created` event first (pure, as `numbered`)."""

    def with_created(number: int, last_ack: float | None) -> NewMail:
        made = numbered(number, last_ack)
        return replace(made, events=[created, *made.events])

    return with_created


class Intake:
    def __init__(
        self,
        assignment: Assignment,
        store: Store,
        clock: IReactorTime,
        calendars: Mapping[str, BusinessCalendar] | None = None,
        new_id: Callable[[], str] = new_task_id,
    ) -> None:
        self.assignment = assignment
        self.router = assignment.router
        self.store = store
        self.clock = clock
        self.calendars = dict(calendars or {})
        self.new_id = new_id

    def submit(
        self,
        channel: Channel,
        queue: str,
        identity: Identity | None = None,
        customer_name: str = "",
        skills: Mapping[str, int] | None = None,
        priority: int | None = None,
        deadline: float | None = None,
        attributes: Mapping[str, Any] | None = None,
        task_id: str | None = None,
    ) -> Deferred[Task]:
        """Route a new task and commit it with its routing (module doc); fires with the stored
        task once committed. Fails with a DomainError for bad input (nothing stored, nobody
        told), or with the commit's failure (the router let the task go)."""
        try:
            task = self.draft(channel, queue, skills, priority, deadline, attributes, task_id)
        except DomainError as exc:
            return fail(exc)
        if (task.channel is Channel.PHONE and identity is not None and identity.kind == "phone"
                and not task.attributes.get(CALLER)):
            task.attributes[CALLER] = identity.value  # every call names its caller
        created = self.created(task, identity)
        try:
            outcome = self.router.submit(task, self.clock.seconds())
        except DomainError as exc:  # a task id the router holds already
            return fail(exc)

        def store_own(routing: list[ev.Event]) -> Deferred[Task]:
            d = self.store.create_task(task, identity, customer_name, [created, *routing])
            return d.addCallback(self._stored, task)

        d = self.assignment.apply_new(task.id, outcome,
                                      functools.partial(self._write, task, store_own))
        return d.addCallbacks(lambda _: task, self._not_stored, errbackArgs=(task,))

    def commit_routed(
        self,
        task: Task,
        identity: Identity | None,
        customer_name: str,
        events: Sequence[ev.Event],
        messages: Sequence[MailMessage],
        outbox: Sequence[OutboxItem],
        numbered: Numbering,
        ack_peer: str | None = None,
    ) -> Deferred[StoredMail]:
        """Route a copy of a drafted e-mail task and store it as `commit` does, with its routing
        in the same transaction (module doc); fires with the StoredMail once committed and
        announced, or fails as `submit`."""
        created = self.created(task, identity)
        routed = task.snapshot()  # the router's; `numbered` reads only `task`
        try:
            outcome = self.router.submit(routed, self.clock.seconds())
        except DomainError as exc:
            return fail(exc)
        number_first = _after(created, numbered)
        kept: list[StoredMail] = []

        def store_own(routing: list[ev.Event]) -> Deferred[StoredMail]:
            row = routed.snapshot()  # as routed, taken on this thread

            def made(number: int, last_ack: float | None) -> NewMail:
                mail = number_first(number, last_ack)
                return replace(mail, task=replace(row, attributes=mail.task.attributes),
                               events=[*mail.events, *routing])

            draft = NewMail(row, [created, *events, *routing], list(messages), list(outbox))
            d = self.store.create_mail_task(draft, identity, customer_name, made, ack_peer)
            return d.addCallback(self._mail_routed, routed, kept)

        d = self.assignment.apply_new(routed.id, outcome,
                                      functools.partial(self._write, routed, store_own))
        return d.addCallbacks(lambda _: kept[0], self._not_stored, errbackArgs=(routed,))

    @staticmethod
    def _mail_routed(stored: StoredMail, routed: Task, kept: list[StoredMail]) -> StoredMail:
        """The router's copy takes what the commit gave (request number, customer). One that
        waits is kept as a restore would load it (`compact`: a queue may hold many)."""
        stored.mail.task.customer_id = routed.customer_id = stored.customer_id
        routed.attributes = dict(stored.mail.task.attributes)
        if routed.state is TaskState.QUEUED:
            compact(routed)
        kept.append(stored)
        return stored

    def _write(self, task: Task, store_own: Callable[[list[ev.Event]], Deferred[_T]],
               changes: Changes) -> Deferred[_T]:
        """The intake's one transaction: `store_own(events)` writes the task's row as routed
        (written once), its `task.created` event and then `events`, its routing's. The
        routing's changes of other tasks (a new task changes none today) go in a `record`
        queued beside it; the Deferred fires once both committed, with what `store_own`
        gave, and fails only when the task was not stored."""
        own, rest = [], Changes(declines=list(changes.declines))
        for e in changes.events:
            (own if e.task_id == task.id else rest.events).append(e)
        rest.tasks = [t for t in changes.tasks if t.id != task.id]
        d = store_own(own)
        if rest:
            others = self.store.record(rest).addErrback(self._others_failed)
            d.addCallback(lambda stored: others.addCallback(lambda _: stored))
        return d

    @staticmethod
    def _others_failed(failure: Failure) -> None:
        log.error("could not commit a new task's changes of other tasks: %s",
                  failure.getErrorMessage())

    def _not_stored(self, failure: Failure, task: Task) -> Failure:
        """The intake's transaction failed: the router lets the task go (never announced)."""
        self.assignment.forget(task.id)
        return failure

    def draft(
        self,
        channel: Channel,
        queue_name: str,
        skills: Mapping[str, int] | None = None,
        priority: int | None = None,
        deadline: float | None = None,
        attributes: Mapping[str, Any] | None = None,
        task_id: str | None = None,
    ) -> Task:
        """A new task, not stored: the queue must exist and take work; the queue's requirement
        plus `skills`; the task's own priority; an e-mail's deadline from the queue's rule and
        business calendar (unless given). Raises a DomainError for bad input."""
        queue = self.router.queues.get(queue_name)
        if queue is None:
            raise UnknownQueue(queue_name)
        if queue.disabled:
            raise QueueDisabled(queue_name)
        try:
            channel = Channel(channel)
        except ValueError:
            raise InvalidValue(f"unknown channel {channel!r}") from None
        extra = check_skills(skills or {})
        try:
            # The task's own priority; the router adds the queue's (never copied here).
            prio = DEFAULT_PRIORITY if priority is None else int(priority)
        except (TypeError, ValueError):
            prio = None
        if prio is None or not MIN_PRIORITY <= prio <= MAX_PRIORITY:
            raise InvalidValue(f"priority must be {MIN_PRIORITY}-{MAX_PRIORITY}, got {priority!r}")
        now = self.clock.seconds()
        if deadline is None and channel is Channel.EMAIL and queue.deadline_rule:
            calendar = self.calendars.get(queue.calendar or "", ALWAYS_OPEN)
            deadline = _rule(queue.deadline_rule).due(now, calendar)
        return Task(
            id=task_id or self.new_id(),
            channel=channel,
            queue=queue.name,
            customer_id=None,
            created_at=now,
            base_skills={**queue.requirement, **extra},
            priority=prio,
            deadline=deadline,
            attributes=dict(attributes or {}),
        )

    def commit(
        self,
        task: Task,
        identity: Identity | None,
        customer_name: str = "",
        events: Sequence[ev.Event] = (),
        messages: Sequence[MailMessage] = (),
        outbox: Sequence[OutboxItem] = (),
        numbered: Numbering | None = None,
        ack_peer: str | None = None,
    ) -> Deferred[StoredMail]:
        """Store a drafted e-mail task with its `task.created` event and then the channel's
        `events`, messages and outbox rows, in one transaction in which the store gives it its
        request number; with `numbered`, what is stored is `numbered(number, last_ack)` (the
        task and rows naming the number; `last_ack`: when `ack_peer` was last acknowledged, as
        that transaction read it; pure: it runs in the store's transaction) instead of the
        draft. Fires with the StoredMail once committed (its task has the customer's id).
        Does not route: call `route` with the stored task after it."""
        created = self.created(task, identity)
        draft = NewMail(task, [created, *events], list(messages), list(outbox))
        d = self.store.create_mail_task(draft, identity, customer_name,
                                        None if numbered is None else _after(created, numbered),
                                        ack_peer)
        return d.addCallback(self._mail_stored)

    @staticmethod
    def _mail_stored(stored: StoredMail) -> StoredMail:
        stored.mail.task.customer_id = stored.customer_id
        return stored

    def route(self, task: Task) -> None:
        """Hand a committed task to the router. A failure is logged, not raised: the task is
        stored already and the next start routes it."""
        try:
            self._hand(task)
        except Exception:
            log.exception("could not route task %s", task.id)

    def created(self, task: Task, identity: Identity | None) -> ev.Event:
        """The `task.created` event of a drafted task."""
        return ev.Event(
            ev.TASK_CREATED, task.created_at, task.id,
            data={"channel": task.channel.value, "queue": task.queue, "priority": task.priority,
                  "deadline": task.deadline, "skills": task.base_skills,
                  "identity": [identity.kind, identity.value] if identity else None},
        )

    @staticmethod
    def _stored(customer_id: str, task: Task) -> Task:
        task.customer_id = customer_id
        return task

    def _hand(self, task: Task) -> None:
        outcome = self.router.submit(task, self.clock.seconds())
        self.assignment.apply(outcome).addErrback(lambda f: None)  # logged by apply
