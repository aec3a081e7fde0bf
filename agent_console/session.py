"""Sessions of the agent console: who is connected, what each socket is told, and what happens
when a socket goes away.

Sits between `server.py` (the sockets) and the service layer. What it promises:
- One live connection per agent: a second one displaces the first (close 4001).
- Frames reach a socket in the order the dispatcher decided (an offer whose customer history
  is still loading holds back what follows it), and only after the decision was committed
  (they come from `Assignment.listen`).
- A dropped socket with a pending offer gives the task back at once (`Sessions.drop`: head of
  the queue, agent `not_responding`); assigned tasks stay with the agent for the grace period,
  then go back to their queue (`Sessions.requeue`) and the agent goes offline. Reconnecting
  within the grace period keeps everything (the welcome lists the tasks). The rule is the
  service's (`dispatcher.service.sessions.Absences`, given the console's `grace_seconds`).
- Nobody is told about another agent's offers or tasks.
- Task views carry the desk's fields (desk.py: call answered, wrap-up window, disposition
  codes); the agents of pull queues get their pull lists (pull.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from dispatcher.aio import Background, to_future
from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent
from dispatcher.domain.callbacks import callback_of
from dispatcher.domain.offers import Offer
from dispatcher.domain.routing import Outcome
from dispatcher.domain.tasks import Channel, Task
from dispatcher.service.backoffice import BackOffice
from dispatcher.service.codification import Codification
from dispatcher.service.collaboration import Collaboration
from dispatcher.service.conversation import Conversation
from dispatcher.service.review import AnswerServices
from dispatcher.service.sessions import Absences
from dispatcher.service.supervision import Balancing

from . import cards
from . import messages as m
from .answers import answers_for_task, item_view
from .cards import customer_view  # noqa: F401 - where tests and older callers import it
from .desk import DESK_EVENTS, desk_fields, desk_frame
from .files import Links
from .pull import PullFeed
from .supervision import LiveFeed

log = logging.getLogger(__name__)

# What the console shows of a callback task (docs/console-protocol.md "Offers": `callback`).
CALLBACK_FIELDS = ("number", "origin", "not_before", "not_after", "attempts", "max_attempts")

# A socket that lets this many frames pile up is closed (1008): it cannot follow the shift.
MAX_PENDING_FRAMES = 1000
CLOSE_TOO_SLOW = 1008

Item = str | dict[str, Any] | Callable[[], Awaitable[dict[str, Any] | None]]
# Where an agent's e-mail answer goes: `(agent_id, task_id, text)`; a Deferred, an awaitable
# or nothing.
ReplyHook = Callable[[str, str, str], Any]


def task_view(task: Task, view: Any = None) -> dict[str, Any]:
    """A task as pushed; with `view` (Queries), what the desk shows too (desk.py)."""
    out = {
        "id": task.id, "channel": task.channel.value, "queue": task.queue,
        "state": task.state.value, "customer_id": task.customer_id,
        "created_at": task.created_at, "deadline": task.deadline, "priority": task.priority,
        "attributes": m.task_attributes(task.attributes),
    }
    callback = callback_of(task.attributes)
    if callback is not None:  # a call to make: the number, shown with the offer
        out["callback"] = {k: callback.get(k) for k in CALLBACK_FIELDS}
    if view is not None:
        out.update(desk_fields(view, task))
    return out


def profile_view(agent: Agent, configured: set[Channel]) -> dict[str, Any]:
    return {
        "id": agent.id, "name": agent.name, "skills": dict(agent.skills),
        "queues": sorted(agent.queues),
        "capacity": {ch.value: n for ch, n in agent.capacity.items()},
        "channels": sorted(c.value for c in configured),
    }


class Session:
    """One authenticated socket. `push` queues a frame (text, a dict, or a coroutine function
    giving a dict or None); one writer task sends them in order."""

    def __init__(self, ws: Any, sub: str, role: str, background: Background) -> None:
        self.ws, self.sub, self.role = ws, sub, role
        self.agent_id: str | None = None  # set by hello when the subject is an agent
        self.greeted = False
        self.sent_offers: set[str] = set()
        self.last_presence: dict[str, Any] | None = None  # the last presence frame pushed
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._writer = background.start(self._write(), name=f"console-writer-{sub}")

    @property
    def watches_queues(self) -> bool:
        return self.role in ("supervisor", "integration")

    def push(self, item: Item) -> None:
        if self._queue.qsize() >= MAX_PENDING_FRAMES:
            log.warning("console: %s cannot keep up; closing", self.sub)
            self.close(CLOSE_TOO_SLOW, "too many pending frames")
            return
        self._queue.put_nowait(item)

    def close(self, code: int, reason: str) -> None:
        self._closing = asyncio.ensure_future(self.ws.close(code, reason))

    def close_after_pending(self, code: int, reason: str) -> None:
        """Close once the frames already queued are sent."""
        async def close() -> None:
            await self.ws.close(code, reason)
        self.push(close)

    async def _write(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._send_ready(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed():
                    return
                log.exception("console: could not send to %s: %s", self.sub, exc)

    async def _send_ready(self, item: Item) -> None:
        """`item` and the frames queued behind it, in order. Those ready together (one
        decision's, mostly) leave in one write (`_send`); a frame still to be built (a
        coroutine function: an offer whose customer history may need a read) first lets those
        before it go. A frame that cannot be built is logged and skipped."""
        queue, ready = self._queue, list[str]()
        while True:
            if callable(item) and ready:
                await self._send(ready)
                ready = []
            text = await self._text(item)
            if text is not None:
                ready.append(text)
            if queue.empty():
                break
            item = queue.get_nowait()
        if ready:
            await self._send(ready)

    async def _text(self, item: Item) -> str | None:
        try:
            if callable(item):
                item = await item()
                if item is None:
                    return None
            return item if isinstance(item, str) else cards.dumps(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._closed():  # a socket going away may fail what it was waiting on
                log.exception("console: could not make a frame for %s: %s", self.sub, exc)
            return None

    async def _send(self, texts: list[str]) -> None:
        """The frames in order; several in one write when the connection can hold its writes
        (dispatcher/held_writes.py)."""
        held = getattr(self.ws, "held_writes", None) if len(texts) > 1 else None
        if held is not None:
            held.hold()
        try:
            for text in texts:
                await self.ws.send(text)
        finally:
            if held is not None:
                held.release()

    def _closed(self) -> bool:
        state = getattr(self.ws, "state", None)
        return state is not None and state.name in ("CLOSING", "CLOSED")

    def stop(self) -> None:
        self._writer.cancel()


class Desks:
    """Every connected session, by agent; the outcome listener that tells them what happened;
    displacement, grace periods and the supervisors' queue snapshots.

    The services it serves are given to the constructor (typed keyword arguments; the console
    edge, plugin.py, passes them); one given as None is one this console runs without, and
    the features it serves are off (the welcome's `features` says which). The one thing that
    may come later is where replies go: `on_reply(fn)` registers it."""

    def __init__(self, *, clock: Any, sessions: Any, queries: Any, history: Any,
                 grace_seconds: float, queues_interval: float, timeline_limit: int,
                 reply_hook: ReplyHook | None = None,
                 answers: AnswerServices | None = None,
                 collaboration: Collaboration | None = None,
                 codification: Codification | None = None,
                 live: LiveFeed | None = None, balancing: Balancing | None = None,
                 backoffice: BackOffice | None = None,
                 conversation: Conversation | None = None,
                 mail_policy: Callable[[], Any] | None = None) -> None:
        self.clock = clock
        self.sessions = sessions
        self.queries = queries
        self.history = history
        self.view = queries  # agents, tasks and offers as the live router sees them
        self.grace_seconds = grace_seconds
        self.queues_interval = queues_interval
        self.timeline_limit = timeline_limit
        self.background = Background()
        self.by_agent: dict[str, Session] = {}
        self.watchers: set[Session] = set()
        # The grace period of a dropped agent: the service's rule, with the console's setting.
        self.absences = Absences(sessions, clock, grace_seconds)
        self._snapshot_timer: Any = None
        # `reply_hook(agent_id, task_id, text)`: where an agent's e-mail answer goes (may
        # return a Deferred or an awaitable); None: replies are refused with `not_available`.
        self.reply_hook = reply_hook
        # The answer services when the library is wired: offers and assignments then carry
        # the mode and the top three (answers.py).
        self.answers = answers
        # Collaboration (notes, consults, reminders, redirects) and codification (category
        # corrections, spam release) services, when wired (collaboration.py).
        self.collaboration = collaboration
        self.codification = codification
        # Supervision (supervision.py): the live-state feed of the supervisors who watch
        # and the balancing actions.
        self.live = live
        self.balancing = balancing
        # The back office: the supervisor page's library, review queue, parked spam and
        # customers, each checked for the role there.
        self.backoffice = backoffice
        # Pull lists for the agents of pull queues (pull.py).
        self.pulls = PullFeed(self)
        # Conversations (conversation.py): the service, the signer of the links to bodies and
        # files (files.py), and the e-mail service's policy (is a relay configured?).
        self.conversation = conversation
        self.links = Links()
        # The customer part of frames, encoded once per version of the card (cards.py).
        self.cards = cards.Cards()
        self.mail_policy = mail_policy

    def on_reply(self, reply_hook: ReplyHook | None) -> None:
        """Register where an agent's e-mail answer goes, `reply_hook(agent_id, task_id, text)`
        (it may return a Deferred or an awaitable), replacing the one given before; None
        refuses replies (`not_available`). For a hook made after the console (an edge
        started later); what is known at construction goes to the constructor."""
        self.reply_hook = reply_hook

    # ------------------------------------------------------------------ connections

    def open(self, ws: Any, sub: str, role: str) -> Session:
        return Session(ws, sub, role, self.background)

    def greet(self, session: Session) -> None:
        """After hello: the session becomes the agent's one connection (displacing any older
        one), supervisors start getting queue snapshots, and the welcome is queued."""
        agent = self.view.acting_agent(session.sub, session.role)
        if agent is not None:
            session.agent_id = agent.id
            old = self.by_agent.get(agent.id)
            self.by_agent[agent.id] = session
            if old is not None and old is not session:
                log.info("console: agent %s displaced an older connection", agent.id)
                old.close(m.CLOSE_DISPLACED, m.DISPLACED_REASON)
            self.absences.back(agent.id)  # the grace period ends; after a restart too
        session.greeted = True
        session.push(self._welcome(session))
        offer = self.view.pending_offer(agent.id) if agent is not None else None
        if offer is not None:
            session.push(self._offer_frame(session, offer))
        if agent is not None:
            self.pulls.add(session)
        if session.watches_queues:
            self.watchers.add(session)
            session.push(self.queues_frame())
            self._arm_snapshots()

    def close(self, session: Session) -> None:
        """The socket is gone (closed, dropped or displaced)."""
        session.stop()
        self.watchers.discard(session)
        self.pulls.forget(session)
        if self.live is not None:
            self.live.forget(session)
        agent_id = session.agent_id
        if agent_id is None or self.by_agent.get(agent_id) is not session:
            return  # displaced: the newer session carries on
        del self.by_agent[agent_id]
        self.absences.left(agent_id)  # the service's grace period (dispatcher.service.sessions)

    def _logged(self, d: Any, what: str) -> None:
        d.addErrback(lambda f: log.warning("console: could not %s: %s", what,
                                           f.getErrorMessage()))

    async def stop(self) -> None:
        self.absences.stop()
        if self._snapshot_timer is not None and self._snapshot_timer.active():
            self._snapshot_timer.cancel()
        self.pulls.stop()
        await self.background.stop()

    # ------------------------------------------------------------------ frames

    def presence_frame(self, agent_id: str) -> dict[str, Any] | None:
        agent = self.view.agent(agent_id)
        if agent is None:
            return None
        return {"type": m.PRESENCE, "status": agent.status.value, "reason": agent.break_reason,
                "presence": self.view.presence(agent),
                "channels": {c.value: (c not in agent.paused) for c in sorted(agent.channels)}}

    def push_presence(self, session: Session) -> None:
        """Push the agent's presence frame, unless it equals the last one pushed to this socket
        (an offer and its accept both leave an agent `busy`: one frame says it)."""
        frame = self.presence_frame(session.agent_id) if session.agent_id else None
        if frame is not None and frame != session.last_presence:
            session.last_presence = frame
            session.push(frame)

    def _welcome(self, session: Session) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def build() -> dict[str, Any]:
            agent = self.view.acting_agent(session.sub, session.role)
            tasks = []
            for task in (self.view.held(agent.id) if agent else []):
                tasks.append({**task_view(task, self.view),
                              "customer": await self._customer(task)})
            return {
                "type": m.WELCOME, "v": m.PROTOCOL_VERSION, "role": session.role,
                "sub": session.sub, "server_time": self.clock.seconds(),
                "agent": profile_view(agent, agent.channels) if agent else None,
                "presence": self.presence_frame(agent.id) if agent else None,
                "tasks": tasks,
                "features": {"reply": bool(self.reply_hook), "history": self.history is not None,
                             "answers": self.answers is not None,
                             "collaboration": self.collaboration is not None,
                             "categories": self.codification is not None,
                             "conversation": self.conversation is not None,
                             "relay": self.relay()},
            }
        return build

    async def _customer(self, task: Task) -> dict[str, Any] | None:
        """The customer card and timeline for a task (None without history or customer)."""
        if self.history is None or not task.customer_id:
            return None
        # From the cache at once: no asyncio Future around an already fired Deferred.
        view = self.history.cached(task.customer_id, self.timeline_limit)
        if view is not None:
            return self.cards.of(view)
        try:
            view = await to_future(self.history.view(task.customer_id, self.timeline_limit))
        except Exception as exc:  # noqa: BLE001 - the offer goes out without its history
            log.warning("console: no history for customer %s: %s", task.customer_id, exc)
            return None
        return self.cards.of(view)

    def _offer_frame(self, session: Session, offer: Offer
                     ) -> Callable[[], Awaitable[dict[str, Any] | None]]:
        async def build() -> dict[str, Any] | None:
            task = self.view.task(offer.task_id)
            customer = await self._customer(task) if task is not None else None
            if task is None or task.offer_id != offer.id:
                return None  # over before it could be shown: its cancellation is skipped too
            session.sent_offers.add(offer.id)
            frame = {"type": m.OFFER, "offer_id": offer.id, "expires_at": offer.expires_at,
                     "expires_in": max(0.0, offer.expires_at - self.clock.seconds()),
                     "task": task_view(task, self.view), "customer": customer}
            if self.answers is not None:
                frame["answers"] = await answers_for_task(self.answers, task, offer.agent_id)
            return frame
        return build

    def _cancel_frame(self, session: Session, offer_id: str, task_id: str, reason: str
                      ) -> Callable[[], Awaitable[dict[str, Any] | None]]:
        async def build() -> dict[str, Any] | None:
            if offer_id not in session.sent_offers:
                return None
            session.sent_offers.discard(offer_id)
            return {"type": m.OFFER_CANCELLED, "offer_id": offer_id, "task_id": task_id,
                    "reason": reason}
        return build

    def queues_frame(self) -> str:
        now = self.clock.seconds()
        return m.dumps({"type": m.QUEUES, "at": now,
                        "queues": [asdict(f) for f in self.queries.queue_figures(now)],
                        "agents": self.queries.agent_presence()})

    def review_held(self, item: Any) -> None:
        """Tell the connected supervisors that an outgoing answer waits for review."""
        frame = m.dumps({"type": m.REVIEW_HELD, "item": item_view(item)})
        for session in list(self.watchers):
            if session.role == "supervisor":
                session.push(frame)

    def review_decided(self, item: Any) -> None:
        """A held answer was decided (committed): tell the agent whose answer it was, and
        the connected supervisors (their review queue shrinks)."""
        frame = m.dumps({"type": m.REVIEW_DECIDED, "item": item_view(item)})
        agent = self.by_agent.get(item.agent_id) if item.agent_id else None
        if agent is not None:
            agent.push(frame)
        for session in list(self.watchers):
            if session.role == "supervisor" and session is not agent:
                session.push(frame)

    def _arm_snapshots(self) -> None:
        if self._snapshot_timer is None or not self._snapshot_timer.active():
            self._snapshot_timer = self.clock.callLater(self.queues_interval, self._snapshot)

    def _snapshot(self) -> None:
        self._snapshot_timer = None
        if not self.watchers:
            return
        frame = self.queues_frame()
        for session in list(self.watchers):
            session.push(frame)
        self._arm_snapshots()

    # ------------------------------------------------------------------ the outcome listener

    def on_outcome(self, outcome: Outcome) -> None:  # noqa: C901 - one branch per event kind
        """Called by Assignment after each committed outcome: tell each agent concerned."""
        touched: set[str] = set()
        withdrawn: set[str] = set()
        by_agent = self.by_agent
        for e in outcome.events:
            agent_id = e.agent_id
            if agent_id is None:
                continue
            touched.add(agent_id)
            session = by_agent.get(agent_id)
            kind = e.kind
            if kind in (ev.OFFER_EXPIRED, ev.OFFER_WITHDRAWN):
                withdrawn.add(e.task_id)
                if session is not None:
                    reason = m.EXPIRED if kind == ev.OFFER_EXPIRED else (
                        m.CALLER_HUNG_UP if e.data.get("reason") == "abandoned" else m.TAKEN_BACK)
                    session.push(self._cancel_frame(session, e.data.get("offer_id"), e.task_id,
                                                    reason))
            elif session is None:
                continue
            elif kind == ev.TASK_ASSIGNED:
                task = self.view.task(e.task_id)
                if task is not None:
                    session.push(self._assigned_frame(task, e.data.get("via")))
            elif kind in DESK_EVENTS:  # wrap-up begun or extended, call answered
                frame = desk_frame(self.view, e)
                if frame is not None:
                    session.push(frame)
            elif kind in (ev.TASK_COMPLETED, ev.TASK_CANCELLED, ev.TASK_ABANDONED,
                          ev.TASK_REQUEUED, ev.TASK_TRANSFERRED) and e.task_id not in withdrawn:
                # a transfer (by the agent, a supervisor, or a PBX whose route failed) takes
                # the task from its holder: `queued`, as docs/protocol.md says
                state = {ev.TASK_COMPLETED: "completed", ev.TASK_CANCELLED: "cancelled",
                         ev.TASK_ABANDONED: "abandoned", ev.TASK_REQUEUED: "queued",
                         ev.TASK_TRANSFERRED: "queued"}[kind]
                session.push({"type": m.TASK_CLOSED, "task_id": e.task_id, "state": state,
                              "reason": e.data.get("reason") or e.data.get("disposition"),
                              "by": e.actor})
        for offer in outcome.offers:
            touched.add(offer.agent_id)
            session = by_agent.get(offer.agent_id)
            if session is None:
                # Offered to an agent whose console socket is gone (grace period): give it back
                # now. An agent who never used the console here (a SIP phone, a CTI desk, the
                # demo's robots) is reached by another edge: leave the offer to its timer.
                if self.absences.away(offer.agent_id):
                    self.clock.callLater(0, self._drop_unreachable, offer.id)
            else:
                session.push(self._offer_frame(session, offer))
        for agent_id in touched:
            session = by_agent.get(agent_id)
            if session is not None:
                self.push_presence(session)
        self.pulls.on_outcome(outcome)

    def relay(self) -> bool | None:
        """Whether our e-mails leave (a relay is configured); None without an e-mail edge."""
        policy = self.mail_policy
        return None if policy is None else bool(getattr(policy(), "relay", False))

    def on_mail(self, news: Any) -> None:
        """The e-mail service's news (after its commit): tell the agent holding the task."""
        task = self.view.task(news.task_id) if news.task_id else None
        session = self.by_agent.get(task.agent_id) if task is not None and task.agent_id \
            else None
        if session is None:
            return
        if news.status is not None:
            session.push({"type": m.MESSAGE_STATUS, "task_id": news.task_id,
                          "message_id": news.message, "status": news.status,
                          "error": news.error})
        else:
            session.push({"type": m.CONVERSATION_CHANGED, "task_id": news.task_id,
                          "message_id": news.message, "kind": news.kind})

    def _drop_unreachable(self, offer_id: str) -> None:
        self._logged(self.sessions.drop(offer_id), f"drop offer {offer_id}")

    def _assigned_frame(self, task: Task, via: str | None
                        ) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def build() -> dict[str, Any]:
            frame = {"type": m.ASSIGNED, "via": via, "task": task_view(task, self.view),
                     "customer": await self._customer(task)}
            if self.answers is not None:
                frame["answers"] = await answers_for_task(self.answers, task, task.agent_id)
            return frame
        return build

