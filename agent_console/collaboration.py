"""The console's collaboration and category messages (docs/protocol.md, "Collaboration and
categories"): internal notes, a task's notes and consults, expert consults, reminders,
redirects, category corrections, the list of parked spam and its release.

Sits beside `server.py`, which hands it every message of `messages.COLLABORATION_TYPES` after
hello. What it promises: each request is one service call (dispatcher.service.collaboration /
codification), answered after its Deferred fired (after the commit). Who may do what is
checked in the services (the roles here first), whatever the page shows: consult, remind and
redirect need an agent holding the task; note and categorise need an agent holding the task, or a
supervisor (any open task); notes can be read by the agent holding the task or a supervisor;
spam_list and spam_release are for supervisors only (through dispatcher.service.backoffice,
which checks the role again). Refusals are `forbidden`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from dispatcher.aio import to_future
from dispatcher.domain.errors import Forbidden, InvalidValue
from dispatcher.domain.events import agent_actor
from dispatcher.service.backoffice import BackOffice, Caller

from . import messages as m

SUPERVISOR = "supervisor"
MAX_NOTE_CHARS = 4000
MAX_QUESTION_CHARS = 20_000


def note_view(n: Any) -> dict[str, Any]:
    return {"id": n.id, "author": n.author, "text": n.text, "at": n.at}


def consult_view(c: Any) -> dict[str, Any]:
    return {"token": c.token, "expert": c.expert, "agent_id": c.agent_id,
            "created_at": c.created_at, "answered_at": c.answered_at}


class CollaborationRequests:
    def __init__(self, desks: Any) -> None:
        self.desks = desks

    async def handle(self, session: Any, kind: str, msg: dict[str, Any], rid: Any
                     ) -> dict[str, Any]:
        service = (getattr(self.desks, "codification", None)
                   if kind in (m.CATEGORISE, m.SPAM_RELEASE, m.SPAM_LIST)
                   else getattr(self.desks, "collaboration", None))
        if service is None:
            return m.error(m.NOT_AVAILABLE, f"{kind} is not available here", rid)
        if kind in m.COLLABORATION_SUPERVISOR_TYPES and session.role != SUPERVISOR:
            raise Forbidden(session.sub, f"{kind} (supervisors only)")
        if kind in m.COLLABORATION_AGENT_TYPES and session.agent_id is None:
            raise Forbidden(session.sub, f"{kind}: not an agent")
        return await getattr(self, "_" + kind)(service, session, msg, rid)

    @staticmethod
    def _actor(session: Any) -> str:
        if session.role == SUPERVISOR:
            return f"supervisor:{session.sub}"
        return agent_actor(session.agent_id or session.sub)

    @staticmethod
    def _holder(session: Any) -> str | None:
        """The agent who must hold the task: None for supervisors (any task)."""
        if session.role == SUPERVISOR:
            return None
        if session.agent_id is None:
            raise Forbidden(session.sub, "not an agent")
        return session.agent_id

    async def _note(self, service, session, msg, rid):
        note = await to_future(service.note(
            m.field(msg, "task_id"), m.field(msg, "text", limit=MAX_NOTE_CHARS) or "",
            self._actor(session), self._holder(session)))
        return m.ok(rid, note_id=note.id)

    async def _notes(self, service, session, msg, rid):
        task_id = m.field(msg, "task_id")
        holder = self._holder(session)  # the service refuses a task that is not theirs
        notes = await to_future(service.notes(task_id, holder))
        consults = await to_future(service.consults(task_id, holder))
        return {"type": m.NOTES, "re": rid, "task_id": task_id,
                "notes": [note_view(n) for n in notes],
                "consults": [consult_view(c) for c in consults]}

    async def _consult(self, service, session, msg, rid):
        consult = await to_future(service.consult(
            m.field(msg, "task_id"), session.agent_id, m.field(msg, "expert"),
            m.field(msg, "question", limit=MAX_QUESTION_CHARS) or ""))
        return m.ok(rid, token=consult.token)

    async def _remind(self, service, session, msg, rid):
        due_at = msg.get("due_at")
        if msg.get("in_seconds") is not None:
            seconds = msg["in_seconds"]
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
                raise m.BadMessage("remind: `in_seconds` is a number")
            due_at = self.desks.clock.seconds() + float(seconds)
        if not isinstance(due_at, (int, float)) or isinstance(due_at, bool):
            raise m.BadMessage("remind: give `due_at` (epoch seconds) or `in_seconds`")
        reminder = await to_future(service.remind(
            m.field(msg, "task_id"), session.agent_id, float(due_at),
            m.field(msg, "note", False, limit=MAX_NOTE_CHARS) or ""))
        return m.ok(rid, reminder_id=reminder.id, due_at=reminder.due_at)

    async def _redirect(self, service, session, msg, rid):
        sent = await to_future(service.redirect(
            m.field(msg, "task_id"), session.agent_id, m.field(msg, "to"),
            m.field(msg, "note", False, limit=MAX_NOTE_CHARS) or ""))
        return m.ok(rid, message_id=sent.id)

    async def _categorise(self, service, session, msg, rid):
        decided = await to_future(service.correct(
            m.field(msg, "task_id"), m.field(msg, "category"), self._actor(session),
            self._holder(session)))
        return m.ok(rid, category=decided.category, previous=decided.previous)

    def _office(self, service) -> BackOffice:
        return getattr(self.desks, "backoffice", None) or BackOffice(codification=service)

    async def _spam_list(self, service, session, msg, rid):
        parked = await to_future(self._office(service).parked_spam(
            Caller(session.sub, session.role)))
        return m.ok(rid, total=parked.total, tasks=[asdict(p) for p in parked.tasks])

    async def _spam_release(self, service, session, msg, rid):
        to_queue = m.field(msg, "to_queue", False)
        try:
            await to_future(self._office(service).release_spam(
                Caller(session.sub, session.role), m.field(msg, "task_id"), to_queue))
        except InvalidValue as exc:
            return m.error(exc.code, str(exc), rid)
        return m.ok(rid)
