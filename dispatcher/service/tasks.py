"""Tasks for any caller that is not the console: list, show, create, cancel, reprioritise,
with the rule of who may, once (the REST API edge only translates).

Sits in the service layer beside `queries.py` (reads) and `intake.py` (new tasks). The caller is
a token's holder (`Caller`: `sub`, `role`), as the edge verified it. What it promises:
- supervisors and integrations (a CRM, a chat front end, a PBX) see every task and may create,
  cancel and reprioritise; an agent sees only the work they hold (assigned, wrap-up) or are
  offered now, as the live router says (`Queries.acting_agent`'s rule: an integration never
  acts as an agent), and changes nothing here (`Forbidden`);
- a new task goes through `Intake.submit` (routed, then committed with its routing); its `source` label
  (e.g. "crm", "chat") is kept in the task's attributes, the channel is one of `Channel`'s;
- the list is ordered newest first and paged by an opaque cursor (the last item's creation
  time and id); filters: state, queue, channel, agent, customer. For supervisors and
  integrations it is one keyset query of the store (`page_tasks`: filters and cursor in SQL,
  a page plus one row read), so every task is reachable however many there are; an agent's
  few tasks come from the live router;
- every change is one router outcome committed before the Deferred fires.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, fail

from dispatcher.domain import events as ev
from dispatcher.domain.errors import DomainError, Forbidden, InvalidValue, UnknownTask
from dispatcher.domain.tasks import Channel, Task, TaskState

from .conversation import Viewer
from .intake import email_identity, phone_identity
from .ports import Identity, StoredEvent, TaskFilter, TaskSummary

SUPERVISOR, INTEGRATION, AGENT = "supervisor", "integration", "agent"
MAX_PAGE = 200
DEFAULT_PAGE = 50
SOURCE = "source"  # the attribute naming the system a task came from ("crm", "chat", ...)
MAX_SOURCE_CHARS = 40
EVERY_TASK = TaskFilter()  # no filter


@dataclass(frozen=True, slots=True)
class Caller:
    sub: str
    role: str

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.sub}"


@dataclass(frozen=True, slots=True)
class TaskPage:
    items: tuple[TaskSummary, ...]
    next: str | None  # the cursor of the next page; None: this is the last


@dataclass(frozen=True, slots=True)
class TaskDetail:
    task: TaskSummary
    trail: tuple[StoredEvent, ...]
    conversation: Any  # conversation.Page, or None when the caller may not read it


def summary_of(task: Task) -> TaskSummary:
    return TaskSummary(task.id, task.channel.value, task.queue, task.state.value,
                       task.customer_id, task.created_at, task.deadline, task.agent_id,
                       task.priority, dict(task.attributes))


def encode_cursor(item: TaskSummary) -> str:
    raw = json.dumps([item.created_at, item.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, task_id = json.loads(raw)
        if isinstance(at, bool) or not isinstance(at, (int, float)) \
                or not isinstance(task_id, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidValue("cursor: not a cursor this server gave") from None
    return float(at), task_id


def identity_for(channel: Channel, kind: str | None, value: str | None) -> Identity | None:
    """The customer's identity as the caller names it (kind `email` or `phone`; by default
    the channel's kind)."""
    if not value:
        return None
    kind = kind or ("phone" if channel is Channel.PHONE else "email")
    if kind == "email":
        return email_identity(value)
    if kind == "phone":
        return phone_identity(value)
    raise InvalidValue(f"identity kind must be email or phone, not {kind!r}")


class Tasks:
    def __init__(self, queries: Any, store: Any, intake: Any, sessions: Any,
                 assignment: Any, conversation: Any = None) -> None:
        self.queries = queries
        self.store = store
        self.intake = intake
        self.sessions = sessions
        self.assignment = assignment
        self.conversation = conversation

    # ------------------------------------------------------------------ who may

    def _mine(self, caller: Caller) -> set[str] | None:
        """The task ids an agent may see (held or offered); None: every task."""
        if caller.role in (SUPERVISOR, INTEGRATION):
            return None
        if caller.role != AGENT:
            raise Forbidden(caller.sub, f"tasks (role {caller.role})")
        agent = self.queries.acting_agent(caller.sub, caller.role)
        if agent is None:
            return set()
        ids = set(agent.held)
        offer = self.queries.pending_offer(caller.sub)
        if offer is not None:
            ids.add(offer.task_id)
        return ids

    @staticmethod
    def _may_change(caller: Caller, what: str) -> None:
        if caller.role not in (SUPERVISOR, INTEGRATION) or not caller.sub:
            raise Forbidden(caller.sub, f"{what} (supervisors and integrations only)")

    # ------------------------------------------------------------------ reads

    def list(self, caller: Caller, where: TaskFilter = EVERY_TASK,
             limit: int = DEFAULT_PAGE, cursor: str | None = None) -> Deferred[TaskPage]:
        return ensureDeferred(self._list(caller, where, limit, cursor))

    async def _list(self, caller: Caller, where: TaskFilter, limit: int,
                    cursor: str | None) -> TaskPage:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_PAGE:
            raise InvalidValue(f"limit is 1-{MAX_PAGE}")
        if where.state is not None and where.state not in {s.value for s in TaskState}:
            raise InvalidValue(f"unknown state {where.state!r}")
        if where.channel is not None and where.channel not in {c.value for c in Channel}:
            raise InvalidValue(f"unknown channel {where.channel!r}")
        after = decode_cursor(cursor) if cursor else None
        mine = self._mine(caller)
        if mine is None:
            items = await self.store.page_tasks(where, after, limit + 1)
        else:
            live = (self.queries.task(i) for i in sorted(mine))
            found = sorted((summary_of(t) for t in live if t is not None),
                           key=lambda t: (t.created_at, t.id), reverse=True)
            items = [t for t in found if where.keeps(t, after)]
        page = tuple(items[:limit])
        more = len(items) > limit
        return TaskPage(page, encode_cursor(page[-1]) if more and page else None)

    def show(self, caller: Caller, task_id: str) -> Deferred[TaskDetail]:
        return ensureDeferred(self._show(caller, task_id))

    async def _show(self, caller: Caller, task_id: str) -> TaskDetail:
        mine = self._mine(caller)
        if mine is not None and task_id not in mine:
            raise Forbidden(caller.sub, f"task {task_id}")
        live = self.queries.task(task_id)
        summary = summary_of(live) if live is not None else await self.store.get_task(task_id)
        if summary is None:
            raise UnknownTask(task_id)
        if live is not None and live.channel is Channel.EMAIL:
            # Shown as a read of the store shows it: the router's task does not hold the
            # preview stored with it (NewMail.preview).
            previews = await self.store.previews([task_id])
            if task_id in previews:
                summary = replace(summary, attributes={**summary.attributes,
                                                       "preview": previews[task_id]})
        trail = tuple(await self.store.task_events(task_id))
        page = None
        if self.conversation is not None:
            try:  # the conversation's own rule: supervisors, and the agent holding it
                page = await self.conversation.page(Viewer(caller.sub, caller.role), task_id)
            except Forbidden:
                page = None
        return TaskDetail(summary, trail, page)

    # ------------------------------------------------------------------ changes

    def create(self, caller: Caller, channel: str, queue: str, *,
               identity_kind: str | None = None, identity: str | None = None,
               customer_name: str = "", priority: int | None = None,
               attributes: Mapping[str, Any] | None = None, source: str | None = None,
               skills: Mapping[str, int] | None = None) -> Deferred[Task]:
        """A new task through Intake; fires once it is committed."""
        try:
            self._may_change(caller, "creating tasks")
            try:
                kind = Channel(channel)
            except ValueError:
                raise InvalidValue(f"unknown channel {channel!r}") from None
            who = identity_for(kind, identity_kind, identity)
            attrs = dict(attributes or {})
            if source is not None:
                if not isinstance(source, str) or not 0 < len(source) <= MAX_SOURCE_CHARS:
                    raise InvalidValue(f"source is a label of 1-{MAX_SOURCE_CHARS} characters")
                attrs[SOURCE] = source
            attrs.setdefault("submitted_by", caller.actor)
        except DomainError as exc:
            return fail(exc)
        return self.intake.submit(kind, queue, who, customer_name or "", skills, priority,
                                  None, attrs)

    def _open(self, caller: Caller, task_id: str, what: str) -> Task:
        self._may_change(caller, what)
        task = self.queries.task(task_id)
        if task is None:
            raise UnknownTask(task_id)
        return task

    def cancel(self, caller: Caller, task_id: str, reason: str = "") -> Deferred[TaskSummary]:
        """Cancel an open task (queued, offered or assigned)."""
        try:
            task = self._open(caller, task_id, "cancelling tasks")
        except DomainError as exc:
            return fail(exc)
        d = self.sessions.cancel(task_id, reason or caller.role, caller.actor)
        d.addCallback(lambda _: summary_of(task))
        return d

    def set_priority(self, caller: Caller, task_id: str, priority: int
                     ) -> Deferred[TaskSummary]:
        """A new priority for an open task (a waiting one takes its new place at once)."""
        try:
            task = self._open(caller, task_id, "reprioritising tasks")
            router = self.assignment.router
            outcome = router.set_priority(task_id, priority, self.assignment.now(),
                                          caller.actor if caller.role != SUPERVISOR
                                          else ev.supervisor_actor(caller.sub))
        except DomainError as exc:
            return fail(exc)
        d = self.assignment.apply(outcome)
        d.addCallback(lambda _: summary_of(task))
        return d
