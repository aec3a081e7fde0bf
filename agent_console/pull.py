"""Pull lists in the console (docs/console-protocol.md, "Pull queues"): the agents of a pull
queue see what they could pick, live.

Sits beside `session.py`: `Desks` owns one `PullFeed`, tells it of each connected agent
(`add`), of each committed outcome (`on_outcome`) and of each socket that goes (`forget`);
`server.py` asks for a refresh after a refused pick. What it promises:
- only an agent who is a member of a pull queue gets `pull_list` frames (one at once when they
  connect, even an empty list, so the page knows there is a list to show);
- the list is what dispatcher.service.queries.Queries.pull_list says (the router's order, only
  tasks the agent could pick, at most MAX_PULL_LIST items and the count of all);
- it is pushed when it changes, at most once per `interval` (1 s) per agent: an outcome only
  marks agents as due, a timer builds their lists, and a list equal to the last one sent (ages
  aside: the page ages items from `created_at`) is not sent again;
- after a refused pick (someone else took the task first) the agent's list is sent again.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from dispatcher.aio import to_future
from dispatcher.domain.queues import Mode
from dispatcher.service.queries import MAX_PULL_LIST

from . import messages as m

PUSH_INTERVAL_SECONDS = 1.0


class PullFeed:
    def __init__(self, desks: Any, interval: float = PUSH_INTERVAL_SECONDS,
                 limit: int = MAX_PULL_LIST) -> None:
        self.desks = desks
        self.interval = interval
        self.limit = limit
        self._due: set[str] = set()  # agents whose list may have changed
        self._last: dict[str, float] = {}  # agent id -> when their list was last built
        self._sent: dict[str, str] = {}  # agent id -> what was last sent (ages aside)
        self._timer: Any = None

    # ------------------------------------------------------------------ told by Desks

    def add(self, session: Any) -> None:
        """A connected agent: a member of a pull queue gets their list now."""
        agent_id = session.agent_id
        if agent_id is None or not self.desks.view.pulls(agent_id):
            return
        self._sent.pop(agent_id, None)
        self._last[agent_id] = self.desks.clock.seconds()
        session.push(self._frame(session, agent_id))

    def forget(self, session: Any) -> None:
        agent_id = session.agent_id
        if agent_id is not None and self.desks.by_agent.get(agent_id) in (None, session):
            self._due.discard(agent_id)
            self._last.pop(agent_id, None)
            self._sent.pop(agent_id, None)

    def refresh(self, agent_id: str) -> None:
        """Send the agent's list again, even when it looks unchanged."""
        self._sent.pop(agent_id, None)
        self._mark({agent_id})

    def on_outcome(self, outcome: Any) -> None:
        """A change of a pull queue's waiting tasks concerns every agent of a pull queue; a
        change of an agent (status, channels, work held, queues) concerns that agent."""
        connected = self.desks.by_agent
        if not connected:
            return
        view = self.desks.view
        due = {e.agent_id for e in outcome.events if e.agent_id in connected}
        # the queues the changed tasks are in now, and those a transfer or move took them from
        names = {t.queue for t in outcome.tasks.values()} | {
            e.data["from_queue"] for e in outcome.events
            if isinstance(e.data.get("from_queue"), str)}
        pulled = {name for name in names
                  if (q := view.queue(name)) is not None and q.mode is Mode.PULL}
        if pulled:
            due.update(connected)
        # Only those who pull (or were shown a list: they may have left their pull queues).
        self._mark({a for a in due if a in self._sent or view.pulls(a)})

    # ------------------------------------------------------------------ the timer

    def _mark(self, agent_ids: set[str]) -> None:
        if agent_ids:
            self._due.update(agent_ids)
            self._arm()

    def _arm(self) -> None:
        if not self._due or (self._timer is not None and self._timer.active()):
            return
        now = self.desks.clock.seconds()
        first = min(self._last.get(a, -math.inf) for a in self._due) + self.interval
        self._timer = self.desks.clock.callLater(max(0.0, first - now), self._flush)

    def _flush(self) -> None:
        self._timer = None
        now = self.desks.clock.seconds()
        view, connected = self.desks.view, self.desks.by_agent
        for agent_id in list(self._due):
            if self._last.get(agent_id, -math.inf) + self.interval > now + 1e-6:
                continue  # sent less than `interval` ago: later
            self._due.discard(agent_id)
            session = connected.get(agent_id)
            if session is None:
                continue
            if not view.pulls(agent_id):
                if agent_id in self._sent:  # no longer in a pull queue: an empty list, once
                    self._sent.pop(agent_id)
                    session.push(m.dumps({"type": m.PULL_LIST, "at": now, "total": 0,
                                          "items": [], "pulls": False}))
                continue
            self._last[agent_id] = now
            session.push(self._frame(session, agent_id))
        self._arm()

    def _frame(self, session: Any, agent_id: str):
        async def build() -> str | None:
            now = self.desks.clock.seconds()
            listed = await to_future(self.desks.view.pull_list(agent_id, now, self.limit))
            items = [asdict(i) for i in listed.items]
            same = m.dumps({"total": listed.total,
                            "items": [{k: v for k, v in i.items() if k != "age"}
                                      for i in items]})
            if self._sent.get(agent_id) == same or self.desks.by_agent.get(agent_id) \
                    is not session:
                return None
            self._sent[agent_id] = same
            return m.dumps({"type": m.PULL_LIST, "at": now, "total": listed.total,
                            "items": items, "pulls": True})
        return build

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
