"""The agent's desk in the console (docs/console-protocol.md, "Calls, wrap-up and
dispositions"): what a task view carries for the desk, the frames that keep it current, and the wrap-up extension.

Sits beside `session.py` (which adds `desk_fields` to every task view it pushes and pushes
`desk_frame` for the events below) and `server.py` (which hands it every message of
`messages.DESK_TYPES` after hello). What it promises:
- a task view says when the call was answered (`answered_at`: the answer of the agent's phone,
  else when the task was assigned), when its wrap-up ends by itself and the latest it may be
  extended to (`wrap_up_until`, `wrap_up_limit`), and its queue's disposition codes
  (`dispositions`, empty: any code), all as the dispatcher has them, never guessed by the page;
- each change of those reaches the agent after the commit: the start of a wrap-up as its
  `task_state` frame (with the window), an extension or the call's answer as `task_update`;
- `wrap_up_extend` is one service call (Sessions.extend_wrap_up: bounded, the holder only, the
  timer re-armed), answered after the commit; someone else's task is `forbidden`.
"""

from __future__ import annotations

from typing import Any

from dispatcher.aio import to_future
from dispatcher.domain import events as ev
from dispatcher.domain.errors import Forbidden
from dispatcher.domain.tasks import Task, TaskState
from dispatcher.service.calls import ANSWERED_AT

from . import messages as m

# The events that change what the desk shows of a task held by the agent.
DESK_EVENTS = frozenset({ev.TASK_WRAP_UP, ev.TASK_WRAP_UP_EXTENDED, ev.CALL_ANSWERED})


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def desk_fields(view: Any, task: Task) -> dict[str, Any]:
    """What a task view carries for the desk (`view`: dispatcher.service.queries.Queries)."""
    answered = task.attributes.get(ANSWERED_AT)
    if not _number(answered):
        answered = task.updated_at if task.state is TaskState.ASSIGNED else None
    window = view.wrap_up_window(task.id)
    queue = view.queue(task.queue)
    return {
        "answered_at": answered,
        "wrap_up_until": window[0] if window else None,
        "wrap_up_limit": window[1] if window else None,
        "dispositions": [{"code": c, "label": label}
                         for c, label in (queue.dispositions if queue else ())],
    }


def desk_frame(view: Any, event: ev.Event) -> dict[str, Any] | None:
    """The frame telling the agent of one of DESK_EVENTS: `task_state` for the start of a
    wrap-up (always told), `task_update` for the rest (None once the task is gone)."""
    if event.kind == ev.TASK_WRAP_UP:
        frame: dict[str, Any] = {"type": m.TASK_STATE, "task_id": event.task_id,
                                 "state": TaskState.WRAP_UP.value}
    elif view.task(event.task_id) is None:
        return None
    else:
        frame = {"type": m.TASK_UPDATE, "task_id": event.task_id}
    if event.kind == ev.CALL_ANSWERED:
        frame["answered_at"] = event.at
    else:
        window = view.wrap_up_window(event.task_id)
        if window is not None:
            frame["wrap_up_until"], frame["wrap_up_limit"] = window
    return frame


class DeskRequests:
    def __init__(self, desks: Any) -> None:
        self.desks = desks

    async def handle(self, session: Any, kind: str, msg: dict[str, Any], rid: Any
                     ) -> dict[str, Any]:
        if session.agent_id is None:
            raise Forbidden(session.sub, f"{kind}: not an agent")
        return await getattr(self, "_" + kind)(session, msg, rid)

    async def _wrap_up_extend(self, session, msg, rid):
        task_id = m.field(msg, "task_id")
        seconds = msg.get("seconds")
        if not _number(seconds):
            raise m.BadMessage("wrap_up_extend: `seconds` is a number")
        await to_future(self.desks.sessions.extend_wrap_up(session.agent_id, task_id, seconds))
        window = self.desks.view.wrap_up_window(task_id)
        return m.ok(rid, wrap_up_until=window[0] if window else None)
