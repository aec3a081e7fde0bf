"""The console's answer messages (docs/protocol.md, "Answers"): the reply box's library search
and top-three suggestions for agents, the library and the review queue for supervisors.

Sits beside `server.py`, which hands it every message of `messages.ANSWER_TYPES` after hello.
What it promises: each request is one service call (dispatcher.service.review / answers; the
supervisors' through dispatcher.service.backoffice, which refuses anyone else again) and its
answer is sent after the call's Deferred fired; supervisor-only messages from any other role are
`forbidden` (checked here, server-side, whatever the page shows); an agent gets suggestions only
for a task they hold or are offered (the service's rule, `Review.suggest`; refused there with
`Forbidden`, which this module sends as `forbidden`). Library texts pushed to a console are plain text (the page
renders text, never HTML from the library). A library is imported in parts of at most
MAX_IMPORT_PART_LINES lines (a frame is at most 64 KiB), each checked before anything is saved.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from dispatcher.aio import to_future
from dispatcher.domain.errors import Forbidden
from dispatcher.service.backoffice import BackOffice, Caller

from . import messages as m

MAX_QUERY_CHARS = 500
MAX_ANSWER_FIELDS_CHARS = 200_000
MAX_IMPORT_PART_LINES = 5000
SUPERVISOR = "supervisor"
AGENT = "agent"


def offered_view(o: Any) -> dict[str, Any]:
    return {"answer_id": o.answer_id, "title": o.title, "score": o.score, "text": o.text,
            "missing": list(o.missing)}


def answer_view(a: Any) -> dict[str, Any]:
    return {"id": a.id, "title": a.title, "text": a.text, "html": a.html,
            "language": a.language, "queues": list(a.queues),
            "categories": list(a.categories), "owner": a.owner, "version": a.version,
            "updated_at": a.updated_at, "retired": a.retired}


def item_view(i: Any) -> dict[str, Any]:
    view = asdict(i)
    view["mode"] = i.mode.value
    return view


def held_view(h: Any) -> dict[str, Any]:
    """A held answer with what the customer wrote (`asked`)."""
    return {**item_view(h.item), "asked": asdict(h.asked) if h.asked is not None else None}


async def answers_for_task(services: Any, task: Any, agent_id: str | None
                           ) -> dict[str, Any] | None:
    """What an offer or an assignment carries about answers: the response mode of the task's
    queue and category, and in the suggested (and automatic) modes the top three, filled."""
    if services is None or getattr(task.channel, "value", task.channel) != "email":
        return None
    mode = services.review.mode_of(task)
    out: dict[str, Any] = {"mode": mode.value}
    if mode.value in ("suggested", "automatic"):
        try:
            found = await to_future(services.review.suggest(task.id, agent_id))
        except Exception:  # noqa: BLE001 - the offer goes out without suggestions
            found = []
        out["suggestions"] = [offered_view(o) for o in found]
    return out


class AnswerRequests:
    def __init__(self, desks: Any) -> None:
        self.desks = desks

    @property
    def services(self) -> Any:
        return getattr(self.desks, "answers", None)

    async def handle(self, session: Any, kind: str, msg: dict[str, Any], rid: Any
                     ) -> dict[str, Any]:
        if self.services is None:
            return m.error(m.NOT_AVAILABLE, "no answer library here", rid)
        if kind in m.ANSWER_SUPERVISOR_TYPES and session.role != SUPERVISOR:
            raise Forbidden(session.sub, f"{kind} (supervisors only)")
        if kind in m.ANSWER_AGENT_TYPES and session.agent_id is None:
            raise Forbidden(session.sub, f"{kind}: not an agent")
        if session.role not in (AGENT, SUPERVISOR):
            raise Forbidden(session.sub, f"{kind} (agents and supervisors only)")
        return await getattr(self, "_" + kind)(session, msg, rid)

    # ------------------------------------------------------------------ agents

    async def _suggest(self, session, msg, rid):
        task_id = m.field(msg, "task_id")
        review = self.services.review
        found = await to_future(review.suggest(task_id, session.agent_id))
        task = self.desks.view.task(task_id)
        mode = review.mode_of(task).value if task is not None else None
        return m.ok(rid, mode=mode, suggestions=[offered_view(o) for o in found])

    async def _answers_search(self, session, msg, rid):
        query = m.field(msg, "query", limit=MAX_QUERY_CHARS) or ""
        task_id = m.field(msg, "task_id", False)
        found = await to_future(self.services.review.search(
            query, task_id, session.agent_id, any_task=session.role == SUPERVISOR))
        return m.ok(rid, answers=[offered_view(o) for o in found])

    # ------------------------------------------------------------------ supervisors

    @property
    def office(self) -> Any:
        """The back office (the supervisors' use cases, each checked for the role)."""
        return getattr(self.desks, "backoffice", None) or BackOffice(
            self.services.library, self.services.review)

    async def _answer_list(self, session, msg, rid):
        retired = msg.get("include_retired") is True
        found = await to_future(self.office.answers(caller(session), retired))
        return m.ok(rid, answers=[answer_view(a) for a in found])

    async def _answer_save(self, session, msg, rid):
        data = msg.get("answer")
        if not isinstance(data, dict) or len(m.dumps(data)) > MAX_ANSWER_FIELDS_CHARS:
            raise m.BadMessage("answer_save: `answer` is an object (id, title, text, html, "
                               "language, queues, categories)")
        saved = await to_future(self.office.save_answer(caller(session), data))
        return m.ok(rid, answer=answer_view(saved))

    async def _answer_retire(self, session, msg, rid):
        saved = await to_future(self.office.retire_answer(caller(session),
                                                          m.field(msg, "answer_id")))
        return m.ok(rid, answer=answer_view(saved))

    async def _answer_history(self, session, msg, rid):
        versions = await to_future(self.office.answer_versions(caller(session),
                                                               m.field(msg, "answer_id")))
        return m.ok(rid, versions=[asdict(v) for v in versions])

    async def _answer_import(self, session, msg, rid):
        lines, first = msg.get("lines"), msg.get("first_line", 1)
        if not (isinstance(lines, list) and len(lines) <= MAX_IMPORT_PART_LINES
                and all(isinstance(x, str) for x in lines)):
            raise m.BadMessage(f"answer_import: `lines` is a list of at most "
                               f"{MAX_IMPORT_PART_LINES} strings (JSON Lines)")
        if not isinstance(first, int) or isinstance(first, bool) or first < 1:
            raise m.BadMessage("answer_import: `first_line` is a line number (1, 2, …)")
        check = msg.get("check") is True
        done = await to_future(self.office.import_answers(caller(session), lines, first,
                                                          check))
        return m.ok(rid, checked=check, created=done.created, updated=done.updated,
                    unchanged=done.unchanged)

    async def _answer_export(self, session, msg, rid):
        retired = msg.get("include_retired") is not False
        lines = await to_future(self.office.export_answers(caller(session), retired))
        return m.ok(rid, lines=lines)

    async def _review_list(self, session, msg, rid):
        held = await to_future(self.office.held_answers(caller(session)))
        return m.ok(rid, items=[held_view(h) for h in held], checklist=self.office.checklist())

    async def _review_decide(self, session, msg, rid):
        marks = msg.get("checklist") or {}
        if not isinstance(marks, dict):
            raise m.BadMessage("review_decide: `checklist` maps items to true/false")
        text = m.field(msg, "text", False, limit=m.MAX_TEXT_CHARS)
        note = m.field(msg, "note", False, limit=m.MAX_TEXT_CHARS) or ""
        decided = await to_future(self.office.decide(
            caller(session), m.field(msg, "item_id"), m.field(msg, "decision"), marks, text,
            note))
        return m.ok(rid, item=item_view(decided))


def caller(session: Any) -> Caller:
    return Caller(session.sub, session.role)
