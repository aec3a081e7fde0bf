"""Task views: one task as the text of `switchboard tasks show ID` (its request number, its
conversation and its trail).

Sits in the admin edge (tasks.py prints it); reads through anything with the store's three task
reads (`dispatcher.service.records.Records` in the command line) and formats with the e-mail
policy's request numbers. `show_task` fires
with None when there is no such task (by id or request number such as SB-000123). Each offer in
the trail shows who it went to and its explanation in words (dispatcher.domain.explanations:
the same words as the supervisors' live view), never raw JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from twisted.internet.defer import Deferred, ensureDeferred

from dispatcher.domain import events as ev
from dispatcher.domain.explanations import explain_in_words
from dispatcher.domain.tasks import Channel, Task, TaskState
from dispatcher.service.compose import html_to_text, one_line
from dispatcher.service.mail import MailPolicy
from dispatcher.service.ports import MailMessage, StoredEvent


class TaskReads(Protocol):
    """What showing a task reads (`Records` has it, and so has `ports.Store`)."""

    def find_mail_task(self, request_number: int | None = ..., message_ids: Sequence[str] = ...,
                       task_id: str | None = ...) -> Deferred[Task | None]: ...
    def mail_messages(self, task_id: str, content: bool = ...
                      ) -> Deferred[list[MailMessage]]: ...
    def task_events(self, task_id: str) -> Deferred[list[StoredEvent]]: ...


@dataclass
class _Shown:
    lines: list[str] = field(default_factory=list)


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _who(e: StoredEvent) -> str:
    """The actor column: who acted, and for an offer who it was offered to (the point of it)."""
    if e.kind == ev.TASK_OFFERED and e.agent_id:
        return f"{e.actor} -> {e.agent_id}"
    return e.actor


def format_task(task: Task, messages: Sequence[MailMessage], trail: Sequence[StoredEvent],
                policy: MailPolicy | None = None) -> str:
    """The text of `switchboard tasks show ID`: the task, its conversation, its trail."""
    policy = policy or MailPolicy()
    out = _Shown()
    number = task.attributes.get("request_number")
    request = policy.label(int(number)) if number is not None else "-"
    out.lines += [
        f"Task {task.id}  request {request}",
        f"  channel {Channel(task.channel).value}  queue {task.queue}  state "
        f"{TaskState(task.state).value}  agent {task.agent_id or '-'}",
        f"  customer {task.customer_id or '-'}  created {_when(task.created_at)}  deadline "
        f"{_when(task.deadline)}",
    ]
    if task.attributes.get("linked_to"):
        why = task.attributes.get("link_reason")
        out.lines.append(f"  linked to task {task.attributes['linked_to']}"
                         + (f" ({why})" if why else ""))
    out.lines += ["", f"Conversation ({len(messages)} messages)"]
    for m in messages:
        arrow = "<-" if m.direction == "in" else "->"
        status = "" if m.direction == "in" else f"  [{m.status}{': ' + m.error if m.error else ''}]"
        flag = "  [malformed]" if m.malformed else ""
        out.lines.append(f"  {_when(m.created_at)} {arrow} {m.kind} "
                         f"{'from' if m.direction == 'in' else 'to'} {m.peer or '-'}{status}{flag}")
        out.lines.append(f"    Subject: {one_line(m.subject)}")
        if m.message_id:
            out.lines.append(f"    Message-ID: <{m.message_id}>")
        body = m.text or html_to_text(m.html)
        for line in body.strip().splitlines()[:20]:
            out.lines.append(f"    | {line}")
        for a in m.attachments:
            out.lines.append(f"    attachment: {a.filename or '(unnamed)'} {a.content_type} "
                             f"{a.size} bytes")
    out.lines += ["", f"Trail ({len(trail)} events)"]
    for e in trail:
        data = ", ".join(f"{k}={v}" for k, v in sorted(e.data.items())
                         if k not in ("explanation",) and v not in (None, "", [], {}))
        out.lines.append(f"  {_when(e.at)}  {e.kind:<18} {_who(e):<24} {data}")
        why = e.data.get("explanation")
        if isinstance(why, dict) and why:
            out.lines.append(f"  {'':22}why: {explain_in_words(why, e.agent_id)}")
        elif why:
            out.lines.append(f"  {'':22}why: {why}")
    return "\n".join(out.lines) + "\n"


def show_task(store: TaskReads, task_or_request: str,
              policy: MailPolicy | None = None) -> Deferred[str | None]:
    """Fetch and format one task (by id or by request number such as SB-000123); None when
    there is no such task."""
    return ensureDeferred(_show_task(store, task_or_request, policy or MailPolicy()))


async def _show_task(store: TaskReads, key: str, policy: MailPolicy) -> str | None:
    number = None
    if key.upper().startswith(policy.request_prefix.upper()):
        digits = key[len(policy.request_prefix):]
        if digits.isdigit():
            number = int(digits)
    task = await store.find_mail_task(request_number=number, task_id=key)
    if task is None:
        return None
    messages = await store.mail_messages(task.id)
    trail = await store.task_events(task.id)
    return format_task(task, messages, trail, policy)


