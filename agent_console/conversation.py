"""The console's conversation messages (docs/console-protocol.md, "Conversation"): `conversation`
asks for a page of a task's thread; the server pushes `conversation_changed` when a message
joins the thread of a task an agent holds and `message_status` when one of our messages
changes delivery status (queued, sent, retrying, dead, bounced).

Sits beside `server.py`, which hands it the `conversation` request after hello, and `session.py`
(`Desks`), which hands it the e-mail service's news. Who may read is the service's rule
(`dispatcher.service.conversation`); this module only translates, and signs the links of the
HTML bodies and attachments it lists (files.py serves them).
"""

from __future__ import annotations

from typing import Any

from dispatcher.aio import to_future
from dispatcher.service.conversation import DEFAULT_LIMIT, Entry, Page, Viewer

from . import messages as m
from .files import HTML_PART, Links


def viewer_of(session: Any) -> Viewer:
    return Viewer(session.agent_id or session.sub, session.role)


def entry_view(e: Entry, viewer: Viewer, links: Links) -> dict[str, Any]:
    out: dict[str, Any] = {"id": e.id, "at": e.at, "kind": e.kind, "internal": e.internal,
                           "author": e.author, "text": e.text}
    if e.kind == "note":
        out["transfer"] = e.transfer
        return out
    out.update({
        "direction": e.direction, "to": list(e.to), "cc": list(e.cc), "subject": e.subject,
        "status": e.status, "error": e.error,
        "html_url": links.link(viewer, e.id, HTML_PART) if e.has_html else None,
        "html_images_url": links.link(viewer, e.id, HTML_PART, images=True)
        if e.has_html else None,
        "attachments": [{"name": f.filename, "type": f.content_type, "size": f.size,
                         "inline": f.inline, "url": links.link(viewer, e.id, str(f.position))}
                        for f in e.files],
    })
    return out


def page_view(page: Page, viewer: Viewer, links: Links, request: str | None,
              rid: Any) -> dict[str, Any]:
    return {"type": m.CONVERSATION, "re": rid, "task_id": page.task_id, "request": request,
            "entries": [entry_view(e, viewer, links) for e in page.entries],
            "more": page.more, "before": page.entries[0].id if page.more else None}


class ConversationRequests:
    def __init__(self, desks: Any) -> None:
        self.desks = desks

    async def handle(self, session: Any, kind: str, msg: dict[str, Any], rid: Any
                     ) -> dict[str, Any]:
        service = self.desks.conversation
        if service is None:
            return m.error(m.NOT_AVAILABLE, "conversations are not available here", rid)
        task_id = m.field(msg, "task_id")
        before = m.field(msg, "before", False)
        limit = msg.get("limit", DEFAULT_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise m.BadMessage("conversation: `limit` is an integer")
        viewer = viewer_of(session)
        page = await to_future(service.page(viewer, task_id, before, limit))
        task = self.desks.view.task(task_id)
        request = task.attributes.get("request") if task is not None else None
        return page_view(page, viewer, self.desks.links, request, rid)
