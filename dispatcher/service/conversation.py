"""Conversation: what an agent reads of a task — every message of its thread, inbound and
outbound, with the internal notes, consults and transfer notes in the same timeline — and the
files and HTML bodies behind it.

Sits in the service layer beside `mail.py`; reads through the `Store` port only. What it
promises:
- Who may read: the agent holding the task (assigned or in wrap-up) and supervisors; anyone
  else gets `Forbidden` (the edge logs it). The rule is here, once, for every edge that shows
  a conversation or serves one of its files.
- `page(viewer, task_id, before, limit)`: the newest `limit` entries before the cursor, oldest
  first, with `more` when earlier ones exist; message texts in full (bounded), HTML only as a
  flag (it is fetched on its own, `html`), attachments as name, type and size.
- `html(viewer, message_id, inline_url)`: the message's HTML sanitised with nh3, its `cid:`
  references turned into `inline_url(position)` so inline images show.
- `attachment(viewer, message_id, position)`: the file (from the database or the attachments
  folder).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twisted.internet.defer import Deferred, ensureDeferred

from dispatcher.domain import events as ev
from dispatcher.domain.errors import Forbidden, InvalidValue, UnknownTask
from dispatcher.domain.routing import Router
from dispatcher.domain.tasks import TaskState

from .compose import html_to_text, safe_html
from .ports import MailAttachment, MailMessage, Store

SUPERVISOR = "supervisor"
HELD = frozenset({TaskState.ASSIGNED, TaskState.WRAP_UP})
MAX_TEXT_CHARS = 100_000
DEFAULT_LIMIT = 30
MAX_LIMIT = 100
# The events of a task's trail shown in its conversation, marked internal.
NOTE_KINDS = frozenset({ev.TASK_NOTE})
CID = re.compile(r"""(src\s*=\s*["']?)cid:([^"'\s>]+)""", re.I)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who asks: `role` agent (`sub` is the agent's id) or supervisor."""

    sub: str
    role: str


@dataclass(frozen=True, slots=True)
class FileInfo:
    position: int
    filename: str
    content_type: str
    size: int
    inline: bool  # referred to by the HTML (cid:)


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a conversation: an e-mail (`kind` customer, reply, ack, auto_reply, dsn,
    consult, redirect) or an internal note (`kind` note; `transfer` says where it went)."""

    id: str
    at: float
    kind: str
    internal: bool
    direction: str | None = None  # in | out (e-mails)
    author: str | None = None  # a note's actor, an e-mail's From
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""
    has_html: bool = False
    status: str | None = None  # ours: queued, sent, retrying, dead, bounced
    error: str | None = None
    files: tuple[FileInfo, ...] = ()
    transfer: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    task_id: str
    entries: tuple[Entry, ...]  # oldest first
    more: bool  # earlier entries exist (ask with before=entries[0].id)


@dataclass(frozen=True, slots=True)
class File:
    filename: str
    content_type: str
    content: bytes


class Conversation:
    def __init__(self, router: Router, store: Store) -> None:
        self.router = router
        self.store = store

    # ------------------------------------------------------------------ who may read

    async def check(self, viewer: Viewer, task_id: str) -> None:
        """Forbidden unless the viewer may read this task's conversation."""
        if viewer.role == SUPERVISOR:
            if task_id in self.router.tasks or await self.store.get_task(task_id) is not None:
                return
            raise UnknownTask(task_id)
        task = self.router.tasks.get(task_id)
        if viewer.role != "agent" or task is None or task.agent_id != viewer.sub \
                or task.state not in HELD:
            raise Forbidden(viewer.sub, f"the conversation of task {task_id}")

    # ------------------------------------------------------------------ the timeline

    def page(self, viewer: Viewer, task_id: str, before: str | None = None,
             limit: int = DEFAULT_LIMIT) -> Deferred[Page]:
        return ensureDeferred(self._page(viewer, task_id, before, limit))

    async def _page(self, viewer: Viewer, task_id: str, before: str | None,
                    limit: int) -> Page:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_LIMIT:
            raise InvalidValue(f"limit is 1-{MAX_LIMIT}")
        await self.check(viewer, task_id)
        messages = await self.store.mail_messages(task_id, content=False)
        trail = await self.store.task_events(task_id)
        entries = sorted([_mail_entry(m) for m in messages] + [
            Entry(id=f"note-{e.id}", at=e.at, kind="note", internal=True, author=e.actor,
                  text=str(e.data.get("text") or ""), transfer=e.data.get("transfer"))
            for e in trail if e.kind in NOTE_KINDS], key=lambda x: (x.at, x.id))
        end = len(entries)
        if before is not None:
            end = next((i for i, x in enumerate(entries) if x.id == before), None)
            if end is None:
                raise InvalidValue(f"no entry {before[:80]!r} in this conversation")
        start = max(0, end - limit)
        return Page(task_id, tuple(entries[start:end]), start > 0)

    # ------------------------------------------------------------------ bodies and files

    async def _message(self, viewer: Viewer, message_id: str) -> MailMessage:
        msg = await self.store.mail_message(id=message_id)
        if msg is None or not msg.task_id:
            raise Forbidden(viewer.sub, f"message {message_id[:80]}")
        await self.check(viewer, msg.task_id)
        return msg

    def html(self, viewer: Viewer, message_id: str,
             inline_url: Callable[[int], str]) -> Deferred[str]:
        return ensureDeferred(self._html(viewer, message_id, inline_url))

    async def _html(self, viewer: Viewer, message_id: str,
                    inline_url: Callable[[int], str]) -> str:
        msg = await self._message(viewer, message_id)
        cids = {a.content_id: i for i, a in enumerate(msg.attachments) if a.content_id}

        def inline(match: re.Match) -> str:
            position = cids.get(match.group(2))
            return match.group(1) + (inline_url(position) if position is not None else "")
        return safe_html(CID.sub(inline, msg.html or ""))

    def attachment(self, viewer: Viewer, message_id: str, position: int) -> Deferred[File]:
        return ensureDeferred(self._attachment(viewer, message_id, position))

    async def _attachment(self, viewer: Viewer, message_id: str, position: int) -> File:
        msg = await self._message(viewer, message_id)
        if not 0 <= position < len(msg.attachments):
            raise InvalidValue(f"no attachment {position} on this message")
        a = msg.attachments[position]
        return File(a.filename or f"attachment-{position + 1}", a.content_type,
                    _content(a))


def _content(a: MailAttachment) -> bytes:
    if a.content is not None:
        return bytes(a.content)
    if a.path:
        return Path(a.path).read_bytes()
    return b""


def _mail_entry(m: MailMessage) -> Entry:
    text = m.text or html_to_text(m.html)
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS] + "\n[…]"
    files = tuple(FileInfo(i, a.filename or f"attachment-{i + 1}", a.content_type, a.size,
                           bool(a.content_id) and f"cid:{a.content_id}" in (m.html or ""))
                  for i, a in enumerate(m.attachments))
    return Entry(
        id=m.id, at=m.created_at, kind=m.kind, internal=m.kind in ("consult",),
        direction=m.direction, author=m.from_addr, to=tuple(m.to_addrs), cc=tuple(m.cc_addrs),
        subject=m.subject, text=text, has_html=bool(m.html),
        status=m.status if m.direction == "out" else None, error=m.error, files=files)
