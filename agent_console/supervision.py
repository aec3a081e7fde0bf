"""The console's supervision messages (docs/console-protocol.md, "Supervision"): the live state for
supervisors and their balancing actions.

Sits beside `server.py`, which hands it every message of `messages.SUPERVISION_TYPES` after
hello. What it promises:
- Only the `supervisor` role may watch or act: anyone else gets `forbidden` (checked here,
  server-side, whatever the page shows; logged by the server), before anything is looked at.
- `watch` subscribes the socket to `live` frames: the current state at once, then at most one
  per second and only when it changed (dispatcher.service.supervision). The state is serialised
  once per change for every watcher; a socket that closes stops watching.
- Each balancing action is one call of dispatcher.service.supervision.Balancing with the
  supervisor's id (their events carry `supervisor:<id>`), answered after the commit. Signing an
  agent off also closes that agent's console politely (their last presence frame first, then
  close code 4004).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from dispatcher.aio import to_future
from dispatcher.domain.agents import MAX_LEVEL, MIN_LEVEL
from dispatcher.domain.errors import Forbidden

from . import messages as m

SUPERVISOR = "supervisor"
MAX_QUEUES = 100  # queues in one agent_update
MAX_SKILLS = 100  # skills in one agent_update
OFFLINE = "offline"


def live_frame(state: Any) -> dict[str, Any]:
    return {"type": m.LIVE, **asdict(state)}


class LiveFeed:
    """The supervisors' sockets that watch the live state."""

    def __init__(self, supervision: Any) -> None:
        self.supervision = supervision
        self.sessions: set[Any] = set()

    def add(self, session: Any) -> None:
        self.sessions.add(session)
        state = self.supervision.watch(self._push)
        session.push(m.dumps(live_frame(state)))

    def forget(self, session: Any) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            self.supervision.unwatch(self._push)

    def _push(self, state: Any) -> None:
        frame = m.dumps(live_frame(state))
        for session in list(self.sessions):
            session.push(frame)


class SupervisionRequests:
    def __init__(self, desks: Any) -> None:
        self.desks = desks

    async def handle(self, session: Any, kind: str, msg: dict[str, Any], rid: Any
                     ) -> dict[str, Any]:
        if session.role != SUPERVISOR:
            raise Forbidden(session.sub, f"{kind} (supervisors only)")
        if kind == m.WATCH:
            live = getattr(self.desks, "live", None)
            if live is None:
                return m.error(m.NOT_AVAILABLE, "no live state here", rid)
            # The answer first, then the state: the frames go out in the order pushed.
            session.push(m.ok(rid))
            live.add(session)
            return None
        balancing = getattr(self.desks, "balancing", None)
        if balancing is None:
            return m.error(m.NOT_AVAILABLE, "no balancing here", rid)
        return await getattr(self, "_" + kind)(balancing, session, msg, rid)

    async def _agent_update(self, balancing, session, msg, rid):
        queues, skills = msg.get("queues"), msg.get("skills")
        if queues is None and skills is None:
            raise m.BadMessage("agent_update: give `queues` and/or `skills`")
        if queues is not None and not (
                isinstance(queues, list) and len(queues) <= MAX_QUEUES
                and all(isinstance(q, str) and 0 < len(q) <= m.MAX_FIELD_CHARS for q in queues)):
            raise m.BadMessage("agent_update: `queues` is a list of queue names")
        if skills is not None and not (
                isinstance(skills, dict) and len(skills) <= MAX_SKILLS
                and all(isinstance(k, str) and 0 < len(k) <= m.MAX_FIELD_CHARS
                        and isinstance(v, int) and not isinstance(v, bool)
                        for k, v in skills.items())):
            raise m.BadMessage(f"agent_update: `skills` maps skill names to levels "
                               f"{MIN_LEVEL}-{MAX_LEVEL}")
        await to_future(balancing.configure_agent(session.sub, m.field(msg, "agent_id"),
                                                  queues=queues, skills=skills))
        return m.ok(rid)

    async def _agent_presence(self, balancing, session, msg, rid):
        agent_id = m.field(msg, "agent_id")
        status = m.field(msg, "status")
        reason = m.field(msg, "reason", False)
        await to_future(balancing.set_presence(session.sub, agent_id, status, reason))
        if status == OFFLINE:  # a forgotten session: close that agent's console politely
            desk = self.desks.by_agent.get(agent_id)
            if desk is not None:
                desk.close_after_pending(m.CLOSE_SIGNED_OFF, m.SIGNED_OFF_REASON)
        return m.ok(rid)

    async def _task_priority(self, balancing, session, msg, rid):
        priority = msg.get("priority")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise m.BadMessage("task_priority: `priority` is an integer")
        await to_future(balancing.set_priority(session.sub, m.field(msg, "task_id"), priority))
        return m.ok(rid)

    async def _task_move(self, balancing, session, msg, rid):
        await to_future(balancing.redirect(session.sub, m.field(msg, "task_id"),
                                           queue=m.field(msg, "to_queue")))
        return m.ok(rid)

    async def _task_assign(self, balancing, session, msg, rid):
        await to_future(balancing.redirect(session.sub, m.field(msg, "task_id"),
                                           agent_id=m.field(msg, "to_agent")))
        return m.ok(rid)

    async def _task_take_back(self, balancing, session, msg, rid):
        reason = m.field(msg, "reason", False) or "supervisor"
        await to_future(balancing.take_back(session.sub, m.field(msg, "task_id"), reason))
        return m.ok(rid)
