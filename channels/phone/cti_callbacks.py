"""Callbacks through a PBX (CTI, issue 18): the PBX calls the agent's extension, then the
customer, and reports what came of it. Part of the phone edge beside cti.py (which owns one
`CtiCallbacks` and hands it the PBX's `callback.*` events); talks to the core only through
`calls.callbacks` (dispatcher.service.callbacks) and the committed outcomes.

What it promises (docs/cti-protocol.md "Callbacks"):
- A callback task assigned to an agent without a registered SIP phone (their extension is on
  the PBX) → one attempt (`callbacks.dialled(via="cti")`) and a `callback` instruction
  {task_id, number, attempt, agent_id, extension, contact} to one integration: the one that
  reported the call a caller kept the place of (its `integration` attribute), else the only
  integration connected, else the first connected (by name; logged). Kept as the task's latest
  instruction and sent again on reconnect until the PBX reports an outcome (cti.py's replay).
- `callback.reached` {task_id} → `callbacks.reached`; `callback.failed` {task_id, reason:
  no_answer | busy | failed | agent_no_answer} → `callbacks.not_reached` (retry or not
  reached), or for `agent_no_answer` the task back in its queue (`callbacks.agent_lost`);
  `callback.ended` {task_id, by: customer | agent | pbx} → `callbacks.ended` (wrap-up). Only
  the integration the instruction went to may report on it (`forbidden` otherwise); a task
  it was never told of is `unknown_call`.
- A callback taken from its agent before an outcome (cancelled, requeued) → `cancel_route`
  {task_id, call_id: null, reason} as for calls.
"""

from __future__ import annotations

import logging
from typing import Any

from dispatcher.aio import to_future
from dispatcher.domain import callbacks as cb
from dispatcher.domain import events as ev
from dispatcher.domain.tasks import TaskState

from . import messages as m

log = logging.getLogger(__name__)

REASONS = ("no_answer", "busy", "failed", "agent_no_answer")
ENDED_BY = ("customer", "agent", "pbx")


class CtiCallbacks:
    def __init__(self, cti: Any) -> None:
        self.cti = cti
        self.callbacks = cti.calls.callbacks
        self._told: dict[str, str] = {}  # task id -> the integration told to call

    # ------------------------------------------------------------------ dispatcher -> PBX

    def on_outcome(self, outcome: Any) -> None:
        for e in outcome.events:
            if e.kind == ev.TASK_ASSIGNED:
                task = self.callbacks.task(e.task_id)
                if task is not None and self.cti.calls.binding(e.agent_id) is None:
                    self._dial(task, e.agent_id)
            elif e.kind in (ev.TASK_CANCELLED, ev.TASK_REQUEUED) and e.task_id in self._told:
                if e.kind == ev.TASK_CANCELLED and e.data.get("reason") == cb.NOT_REACHED:
                    self._forget(e.task_id)  # the PBX reported it: nothing to take back
                    continue
                integration = self._told[e.task_id]
                self._issue(integration, e.task_id, {
                    "type": m.CANCEL_ROUTE, "call_id": None, "task_id": e.task_id,
                    "reason": m.CANCELLED if e.kind == ev.TASK_CANCELLED else m.REQUEUED,
                    **self.cti._where(e.agent_id)})
                del self._told[e.task_id]

    def _dial(self, task: Any, agent_id: str) -> None:
        integration = self._integration_for(task)
        if integration is None:
            log.warning("cti: callback %s assigned to %s but no PBX is connected: it is told "
                        "when one connects", task.id, agent_id)
            integration = str(task.attributes.get("integration") or "")
            if not integration:
                return

        def told(request: dict[str, Any]) -> None:
            self._told[task.id] = integration
            self._issue(integration, task.id, {
                "type": m.CALLBACK, "task_id": task.id, "number": request["number"],
                "attempt": request["attempts"], **self.cti._where(agent_id)})

        d = self.callbacks.dialled(task.id, agent_id, "cti")
        d.addCallbacks(told, lambda f: log.info("cti: callback %s not dialled: %s", task.id,
                                                f.getErrorMessage()))

    def _integration_for(self, task: Any) -> str | None:
        own = task.attributes.get("integration")
        live = sorted(k for k, links in self.cti.links.items() if links)
        if isinstance(own, str) and own:
            return own
        if len(live) > 1:
            log.info("cti: callback %s: several PBXs connected (%s): told %s", task.id,
                     ", ".join(live), live[0])
        return live[0] if live else None

    def _issue(self, integration: str, task_id: str, frame: dict[str, Any]) -> None:
        from .cti import CallRef

        self.cti._issue(CallRef("", task_id, integration), frame)

    def _forget(self, task_id: str) -> None:
        integration = self._told.pop(task_id, None)
        self.cti.instructions.settled(task_id, integration)

    # ------------------------------------------------------------------ PBX -> dispatcher

    async def event(self, sub: str, msg: dict[str, Any], rid: Any) -> dict[str, Any]:
        from .cti import Refused

        kind = msg["type"]
        task_id = m.text(msg, "task_id", limit=m.MAX_FIELD_CHARS) or ""
        task = self.callbacks.task(task_id)
        told = self._told.get(task_id)
        if task is None or told is None:
            raise Refused(m.UNKNOWN_CALL, f"no callback {task_id} was given to a PBX")
        if told != sub:
            raise Refused(m.FORBIDDEN, f"callback {task_id} was given to another integration")
        agent_id = task.agent_id or ""
        if kind == m.CALLBACK_REACHED:
            await to_future(self.callbacks.reached(task_id, agent_id))
            self.cti.instructions.settled(task_id, sub)
        elif kind == m.CALLBACK_FAILED:
            reason = m.choice(msg, "reason", REASONS, "no_answer")
            self._forget(task_id)
            if reason == "agent_no_answer":
                await to_future(self.callbacks.agent_lost(task_id, agent_id, reason))
            else:
                await to_future(self.callbacks.not_reached(task_id, agent_id, reason))
        else:  # m.CALLBACK_ENDED
            by = m.choice(msg, "by", ENDED_BY, "pbx")
            self._forget(task_id)
            if task.state is TaskState.ASSIGNED:
                await to_future(self.callbacks.ended(task_id, by))
        return m.ok(rid, task_id=task_id, agent_id=agent_id)
