"""Supervision: the supervisors' live view of queues and agents, and their balancing actions.

Sits in `dispatcher.service` beside `queries.py` (read models) and `configuration.py` /
`sessions.py` (use cases). What it promises:

- `Supervision.state(now)` is the live state: per queue and channel the tasks waiting (queued
  or offered), the oldest arrival (longest wait = `at - oldest_arrival`), the oldest deadline,
  how many waiting tasks are *at risk* of missing their due time and how many already did,
  today's service level (from `reports.Today`: the one definition of docs/metrics.md, folded
  from today's log incrementally, seeded from the store by `start()`, which reads only what the
  figures need: `storage/reports.py`), and the agents eligible
  for it split by what they are doing for that channel (available, busy, wrap-up, on break by
  reason, not responding, offline), its oldest waiting tasks (OLDEST_PER_QUEUE) and why its
  tasks wait (`why`, `hint`: see below); per agent their presence and since when, their tasks
  and pending offer; the most urgent waiting tasks (and how many wait in all); hourly series of
  today for the charts. Tasks are shown by their request number, subject or caller's number,
  and with the latest routing decision about them in words (`TaskLive.decision`: the offer's
  explanation, kept from the outcomes seen since the start, through
  dispatcher.domain.explanations like the text view; constant work per event, words made once
  per decision and only for the tasks shown).
- *Why waiting* is read from the router's state for the task the router would serve first in
  that queue and channel (its current requirement, after escalation steps): `no_members`
  (nobody in the queue takes the channel), `nobody_signed_in` (every such member is offline),
  `skill_missing` (members are signed in, none meets the requirement: the hint names the skill
  and the best level signed in), `all_busy` (those who meet it are busy, wrapping up, on a break,
  not responding, have the channel switched off or no phone reachable: the hint counts them),
  `declined` (the free ones declined this task), `pull` (a pull queue: someone must pick it),
  `reserved` (kept for the agent who answered the customer before), `offered` (every waiting
  task is offered: waiting for an answer), `routing` (an agent is free: an offer follows).
- *At risk* (AT_RISK_SHARE): a waiting task whose due time — an e-mail's deadline (or arrival
  plus the queue's e-mail target when it has none), a call's arrival plus the queue's phone
  target — is not yet past but less than a quarter of the time it was given remains.
  *Overdue*: the due time is past.
- Watchers (`watch(listener)`) get the state at most once per PUSH_INTERVAL_SECONDS, only when
  it changed (timestamps are sent, not ages, so an unchanged state stays equal as time passes).
  Committed outcomes only mark the view stale (`on_outcome`: constant work per event); the
  state is computed once per tick whatever the number of events (cost: open tasks + agents +
  queue memberships), and today's figures are re-read at most once per tick, and at least every
  SL_REFRESH_SECONDS (e-mail answers are logged by the mail service, not through routing).
- `Balancing` carries out a supervisor's actions, each one router decision committed with the
  supervisor as actor (`supervisor:<id>`) in its events: move an agent between queues and
  change their skills, change an agent's presence, change a task's priority, send a task to
  another queue or to a named agent, take a task back from its agent. The router reacts at
  once (offers follow in the same outcome).
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, fail

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, Presence, meets
from dispatcher.domain.errors import DomainError, InvalidValue, UnknownAgent
from dispatcher.domain.explanations import explain_in_words
from dispatcher.domain.metrics import EMAIL_RESPONSE_EDGES, PHONE_WAIT_EDGES
from dispatcher.domain.queues import Mode
from dispatcher.domain.routing import Outcome, Router
from dispatcher.domain.tasks import Channel, Task, TaskState

from .assignment import Assignment
from .configuration import Configuration
from .sessions import Sessions

log = logging.getLogger(__name__)

# Watchers get the live state at most this often (seconds), and only when it changed.
PUSH_INTERVAL_SECONDS = 1.0
# A waiting task is at risk when less than this share of the time it was given (from arrival
# to its due time) remains: a call with a 20 s target after 15 s, an e-mail due in 24 h with
# less than 6 h left.
AT_RISK_SHARE = 0.25
# Today's figures are re-read from the log at least this often while someone watches.
SL_REFRESH_SECONDS = 5.0
# The most urgent waiting tasks listed in the state (the counts cover them all).
LIVE_TASKS_LIMIT = 100
# A task's label (an e-mail's subject, a caller's number) is cut to this many characters.
LABEL_CHARS = 80
# The oldest waiting tasks listed per queue and channel (the count covers them all).
OLDEST_PER_QUEUE = 5
# Why a queue's tasks wait (QueueLive.why): see the module docstring.
WHY = ("no_members", "nobody_signed_in", "skill_missing", "all_busy", "declined", "pull",
       "reserved", "offered", "routing")

_WAITING = (TaskState.QUEUED, TaskState.OFFERED)
# The events after which a task's decisions are no longer shown.
_CLOSED = frozenset({ev.TASK_COMPLETED, ev.TASK_CANCELLED, ev.TASK_ABANDONED})


@dataclass(frozen=True, slots=True)
class QueueLive:
    """One queue and channel, now. Times are epoch seconds (None: nothing of the kind)."""

    queue: str
    channel: str
    waiting: int  # queued or offered: the customer still waits for an agent
    offered: int  # of which offered to an agent right now
    oldest_arrival: float | None
    oldest_deadline: float | None
    next_due: float | None  # the earliest due time of a waiting task
    at_risk: int
    overdue: int
    sl_target: float  # seconds (phone: answered within; e-mail without deadline: answered within)
    sl_share: float  # the share to reach
    service_level: float | None  # today, None when nothing was settled yet
    sl_met: int
    sl_total: int
    eligible: int  # members who meet the queue's requirement and handle the channel
    available: int  # could be offered a task of this channel now
    busy: int  # signed in and available, but working (no room for this channel now)
    wrap_up: int
    on_break: int
    breaks: Mapping[str, int]  # on_break by reason
    not_responding: int
    offline: int
    oldest: tuple[TaskLive, ...] = ()  # the oldest waiting first, at most OLDEST_PER_QUEUE
    why: str | None = None  # one of WHY when tasks wait, else None
    hint: str = ""  # `why` in words, for the board


@dataclass(frozen=True, slots=True)
class TaskLive:
    id: str
    channel: str
    queue: str
    state: str
    priority: int
    created_at: float
    deadline: float | None
    due: float
    agent_id: str | None  # the holder, or the agent it is offered to
    at_risk: bool
    overdue: bool
    label: str  # subject or caller, at most LABEL_CHARS
    request: str = ""  # an e-mail's request number (e.g. SB-000123), else ""
    # The latest routing decision about it in words (explanations.explain_in_words), "" when
    # none was seen since this router started.
    decision: str = ""


@dataclass(frozen=True, slots=True)
class AgentLive:
    id: str
    name: str
    presence: str  # what supervisors see (Presence values)
    status: str  # what the agent chose (or not_responding)
    reason: str | None  # of a break
    since: float | None  # when the presence began (None: never signed in here)
    queues: tuple[str, ...]
    skills: Mapping[str, int]
    channels: tuple[str, ...]  # the channels they take new work on (per-channel presence)
    tasks: tuple[TaskLive, ...]  # assigned and wrap-up
    offer: TaskLive | None


@dataclass(frozen=True, slots=True)
class Series:
    """Today by hour, for the charts: `starts[i]` is the hour's start; a None value: nothing."""

    starts: tuple[float, ...] = ()
    service_level: tuple[float | None, ...] = ()
    service_level_email: tuple[float | None, ...] = ()
    service_level_phone: tuple[float | None, ...] = ()
    arrived: tuple[int, ...] = ()
    handled: tuple[int, ...] = ()
    depth: tuple[int, ...] = ()  # the most tasks waiting at once
    # The day's distributions: calls answered within each edge (seconds; the last bin is
    # beyond the last edge), e-mails first answered within each edge.
    wait_edges: tuple[float, ...] = PHONE_WAIT_EDGES
    wait_bins: tuple[int, ...] = ()
    response_edges: tuple[float, ...] = EMAIL_RESPONSE_EDGES
    response_bins: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class LiveState:
    at: float
    day_start: float | None
    queues: tuple[QueueLive, ...]
    agents: tuple[AgentLive, ...]
    waiting: tuple[TaskLive, ...]  # the most urgent, at most LIVE_TASKS_LIMIT
    series: Series = field(default_factory=Series)
    waiting_total: int = 0  # every waiting task (queued or offered), listed or not

    def same_as(self, other: LiveState | None) -> bool:
        """Equal but for the time it was taken."""
        return other is not None and replace(other, at=self.at) == self


Listener = Callable[[LiveState], None]


class _Waiting:
    """What one pass over the open tasks gathers for one queue and channel."""

    __slots__ = ("n", "offered", "oldest", "deadline", "due", "at_risk", "overdue", "head",
                 "first")

    def __init__(self) -> None:
        self.n = self.offered = self.at_risk = self.overdue = 0
        self.oldest: float | None = None
        self.deadline: float | None = None
        self.due: float | None = None
        # The queued task the router serves first: (order key, task); the oldest waiting
        # tasks: a max-heap of (-created_at, id) bounded to OLDEST_PER_QUEUE.
        self.head: tuple[tuple, Task] | None = None
        self.first: list[tuple[float, str]] = []


def _request(task: Task) -> str:
    value = task.attributes.get("request")
    return value[:LABEL_CHARS] if isinstance(value, str) else ""


def _label(task: Task) -> str:
    attrs = task.attributes
    text = attrs.get("subject") if task.channel is Channel.EMAIL else attrs.get("caller")
    if not isinstance(text, str):
        return ""
    text = " ".join(text.split())
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


class Supervision:
    """The live view (see the module docstring). `today` is a `reports.Today` (None: no
    service level); `clock` an IReactorTime."""

    def __init__(self, router: Router, clock: Any, today: Any = None, *,
                 interval: float = PUSH_INTERVAL_SECONDS, at_risk_share: float = AT_RISK_SHARE,
                 sl_refresh_seconds: float = SL_REFRESH_SECONDS,
                 tasks_limit: int = LIVE_TASKS_LIMIT,
                 oldest_per_queue: int = OLDEST_PER_QUEUE) -> None:
        if not 0 < at_risk_share < 1:
            raise InvalidValue("at_risk_share must be in (0, 1)")
        self.router = router
        self.clock = clock
        self.today = today
        self.interval = interval
        self.at_risk_share = at_risk_share
        self.sl_refresh_seconds = sl_refresh_seconds
        self.tasks_limit = tasks_limit
        self.oldest_per_queue = oldest_per_queue
        self.figures: Any = None  # today's metrics.Figures, as last read
        self.refreshes = 0  # reads of today's figures (for tests and /metrics)
        self.computed = 0  # states computed
        self._listeners: list[Listener] = []
        self._timer: Any = None
        self._stale = True
        self._refreshed_at = -math.inf
        self._refreshing = False
        self._last: LiveState | None = None
        # Agents touched by an event since the last tick -> the time of their latest event;
        # each agent's displayed presence -> (presence, since when).
        self._moved: dict[str, float] = {}
        self._presence: dict[str, tuple[str, float | None]] = {}
        # Open task id -> [its latest offer's explanation, the agent offered, its words (None
        # until a state shows them)]: kept from the outcomes, dropped when the task closes.
        self._decisions: dict[str, list[Any]] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Deferred[None]:
        """Seed today's figures from the store (the day so far); fires once they are read, and
        never fails (a failed read is logged, and the next tick reads again). Until then the
        state has no figures (`figures` None): the runtime does not wait for them to route."""
        return self._refresh().addCallback(lambda _: None)

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._listeners.clear()

    # ------------------------------------------------------------------ input

    def on_outcome(self, outcome: Outcome) -> None:
        """An assignment listener: a committed outcome makes the view stale (no computing
        here, whatever the number of events)."""
        if not outcome.events:
            return
        self._stale = True
        moved, decisions = self._moved, self._decisions
        for e in outcome.events:
            if e.agent_id is not None:
                moved[e.agent_id] = e.at
            kind = e.kind
            if kind == ev.TASK_OFFERED and e.task_id is not None:
                why = e.data.get("explanation")
                if isinstance(why, dict):
                    decisions[e.task_id] = [why, e.agent_id, None]
            elif kind in _CLOSED and e.task_id is not None:
                decisions.pop(e.task_id, None)

    # ------------------------------------------------------------------ watchers

    def watch(self, listener: Listener) -> LiveState:
        """Call `listener(state)` whenever the state changed, at most once per interval.
        Returns the state now (for the new watcher's first frame)."""
        if listener not in self._listeners:
            self._listeners.append(listener)
        self._arm()
        return self.state()

    def unwatch(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
        if not self._listeners and self._timer is not None and self._timer.active():
            self._timer.cancel()
            self._timer = None

    @property
    def watched(self) -> bool:
        return bool(self._listeners)

    def _arm(self) -> None:
        if self._listeners and (self._timer is None or not self._timer.active()):
            self._timer = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if not self._listeners:
            return
        now = self.clock.seconds()
        self._arm()
        stale, self._stale = self._stale, False
        due = now - self._refreshed_at >= self.sl_refresh_seconds
        if self.today is not None and (stale or due) and not self._refreshing:
            # A read that completes at once (the memory store) is in this tick's state; a
            # slower one (the SQL log) is in the next tick's: never two pushes in one tick.
            self._refresh()
        self._publish()

    def _refresh(self) -> Deferred[None]:
        """Re-read today's figures (incremental: `Today` folds only what was committed since
        its last read). A failure keeps the figures read before, and is logged."""
        d: Deferred[None] = Deferred()
        if self.today is None:
            d.callback(None)
            return d
        self._refreshing = True
        self._refreshed_at = self.clock.seconds()

        def done(figures: Any) -> None:
            self._refreshing = False
            self.figures = figures
            self.refreshes += 1

        def failed(f: Any) -> None:
            self._refreshing = False
            log.warning("supervision: could not read today's figures: %s", f.getErrorMessage())

        self.today.refresh().addCallbacks(done, failed).addBoth(lambda _: d.callback(None))
        return d

    def _publish(self) -> None:
        if not self._listeners:
            return
        state = self.state()
        if state.same_as(self._last):
            return
        self._last = state
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                log.exception("supervision: watcher %r failed", listener)

    # ------------------------------------------------------------------ the state

    def state(  # noqa: C901 - one pass over the open tasks, each figure kept inline
        self, now: float | None = None
    ) -> LiveState:
        """The live state now (computed on each call: for the ticks and a new watcher). One
        pass over the open tasks; a TaskLive is built only for the listed ones."""
        now = self.clock.seconds() if now is None else now
        self.computed += 1
        r = self.router
        self._track_presence()
        if len(self._decisions) > len(r.tasks):  # closed without an event seen here
            self._decisions = {t: d for t, d in self._decisions.items() if t in r.tasks}
        waiting: dict[tuple[str, Channel], _Waiting] = {}
        urgent: list[tuple[float, float, str]] = []
        queues_of, share = r.queues, self.at_risk_share
        queued, offered = TaskState.QUEUED, TaskState.OFFERED
        keep = self.oldest_per_queue
        for task in r.tasks.values():
            state = task.state
            if state is not queued and state is not offered:
                continue
            created = task.created_at
            due = queues_of[task.queue].due(task)
            key = (task.queue, task.channel)
            w = waiting.get(key)
            if w is None:
                w = waiting[key] = _Waiting()
            w.n += 1
            if state is offered:
                w.offered += 1
            else:
                order = r.order(task)
                if w.head is None or order < w.head[0]:
                    w.head = (order, task)
            if len(w.first) < keep:
                heapq.heappush(w.first, (-created, task.id))
            elif -created > w.first[0][0]:
                heapq.heapreplace(w.first, (-created, task.id))
            if w.oldest is None or created < w.oldest:
                w.oldest = created
            if task.deadline is not None and (w.deadline is None or task.deadline < w.deadline):
                w.deadline = task.deadline
            if w.due is None or due < w.due:
                w.due = due
            if now > due:
                w.overdue += 1
            elif due - now < share * max(0.0, due - created):
                w.at_risk += 1
            urgent.append((due, created, task.id))
        queues = tuple(self._queue_live(name, channel, waiting.get((name, channel)), now)
                       for name in sorted(r.queues) for channel in Channel)
        agents = tuple(self._agent_live(a, now) for a in sorted(r.agents.values(),
                                                                 key=lambda a: a.id))
        top = tuple(self._task_live(r.tasks[entry[2]], now)
                    for entry in heapq.nsmallest(self.tasks_limit, urgent))
        figures = self.figures
        return LiveState(
            at=now, day_start=figures.start if figures is not None else None, queues=queues,
            agents=agents, waiting=top, series=self._series(), waiting_total=len(urgent))

    def _task_live(self, task: Task, now: float) -> TaskLive:
        due = self.router.queues[task.queue].due(task)
        allowed = max(0.0, due - task.created_at)
        overdue = now > due
        return TaskLive(
            id=task.id, channel=task.channel.value, queue=task.queue, state=task.state.value,
            priority=task.priority, created_at=task.created_at, deadline=task.deadline, due=due,
            agent_id=task.agent_id, overdue=overdue,
            at_risk=not overdue and due - now < self.at_risk_share * allowed,
            label=_label(task), request=_request(task), decision=self._decision(task.id))

    def _decision(self, task_id: str) -> str:
        """The task's latest routing decision in words (made once per decision, when first
        shown)."""
        seen = self._decisions.get(task_id)
        if seen is None:
            return ""
        if seen[2] is None:
            seen[2] = explain_in_words(seen[0], seen[1])
        return seen[2]

    def _queue_live(self, name: str, channel: Channel, w: _Waiting | None,
                    now: float) -> QueueLive:
        r = self.router
        queue = r.queues[name]
        w = w or _Waiting()
        counts = {p: 0 for p in ("available", "busy", "wrap_up", "break", "not_responding",
                                 "offline")}
        breaks: dict[str, int] = {}
        eligible = 0
        for agent_id in r.members(name):
            agent = r.agents[agent_id]
            if (channel not in agent.channels or agent.capacity.get(channel, 0) <= 0
                    or not meets(agent.skills, queue.requirement)):
                continue
            eligible += 1
            kind = self._doing(agent, channel, r.matrix_of(agent))
            counts[kind] += 1
            if kind == "break":
                reason = agent.break_reason or ""
                breaks[reason] = breaks.get(reason, 0) + 1
        met, total, level = 0, 0, None
        if self.figures is not None:
            cell = self.figures.cell("queue_channel", f"{name}/{channel.value}")
            met, total = cell.counts.get("sl_met", 0), cell.counts.get("sl_total", 0)
            level = met / total if total else None
        target = queue.sl_target.get(channel)
        tasks = r.tasks
        oldest = tuple(self._task_live(tasks[task_id], now)
                       for _, task_id in sorted(w.first, reverse=True))
        why, hint = self._why(queue, channel, w) if w.n else (None, "")
        return QueueLive(
            queue=name, channel=channel.value, waiting=w.n, offered=w.offered,
            oldest_arrival=w.oldest, oldest_deadline=w.deadline, next_due=w.due,
            at_risk=w.at_risk, overdue=w.overdue,
            sl_target=float(target) if target is not None else 0.0, sl_share=queue.sl_share,
            service_level=level, sl_met=met, sl_total=total, eligible=eligible,
            available=counts["available"], busy=counts["busy"], wrap_up=counts["wrap_up"],
            on_break=counts["break"], breaks=dict(sorted(breaks.items())),
            not_responding=counts["not_responding"], offline=counts["offline"],
            oldest=oldest, why=why, hint=hint)

    def _why(self, queue: Any, channel: Channel, w: _Waiting) -> tuple[str, str]:
        """Why the tasks of a queue and channel wait (module docstring), read for the task the
        router would serve first. Cost: the queue's members."""
        r = self.router
        if w.head is None:
            n = w.offered
            return "offered", f"{n} offered: waiting for {'an answer' if n == 1 else 'answers'}"
        task = w.head[1]
        need = task.required_skills
        label = "calls" if channel is Channel.PHONE else "e-mails"
        members = [r.agents[a] for a in r.members(queue.name)
                   if channel in r.agents[a].channels and r.agents[a].capacity.get(channel, 0)]
        if not members:
            return "no_members", f"Nobody in {queue.name} takes {label}"
        signed_in = [a for a in members if a.status is not Presence.OFFLINE]
        if not signed_in:
            n = len(members)
            return "nobody_signed_in", (f"No agent signed in ({n} member{'s' * (n != 1)} "
                                        f"offline)")
        cond = task.condition
        able = [a for a in signed_in if meets(a.skills, need)
                and (cond is None or cond.meets(a.skills, a.attributes))]
        if not able and cond is not None and any(meets(a.skills, need) for a in signed_in):
            return "skill_missing", f"No agent signed in meets {cond.text}"
        if not able:
            missing = []
            for skill, level in sorted(need.items()):
                best = max((a.skills.get(skill, -1) for a in signed_in), default=-1)
                if best < level:
                    missing.append(f"{skill} ≥ {level} (best signed in: "
                                   f"{best if best >= 0 else 'none'})")
            return "skill_missing", "Skill missing: needs " + ", ".join(missing)
        declined = r.declined.get(task.id, ())
        free = [a for a in able if a.can_take(channel, r.matrix_of(a))]
        if not free:
            return "all_busy", self._busy_hint(able, channel)
        if all(a.id in declined for a in free):
            return "declined", "Declined by every agent free to take it"
        if queue.mode is Mode.PULL:
            return "pull", "Pull queue: waits for an agent to pick it"
        keeper = r.reserved_for(task.id)
        if keeper is not None:
            return "reserved", f"Kept for {keeper}, who answered this customer before"
        return "routing", "An agent is free: being offered"

    def _busy_hint(self, able: list[Agent], channel: Channel) -> str:
        doing: dict[str, int] = {}
        for a in able:
            if a.status is Presence.BREAK:
                kind = "on a break"
            elif a.status is Presence.NOT_RESPONDING:
                kind = "not responding"
            elif channel in a.paused:
                kind = f"{channel.value} switched off"
            elif channel in a.unreachable:
                kind = "no phone reachable"
            elif channel in a.engaged and not a.held:
                kind = "on a call outside routing"  # a PBX's device.state, a phone's 486
            elif a.wrapping:
                kind = "wrapping up"
            else:
                kind = "busy"
            doing[kind] = doing.get(kind, 0) + 1
        n = len(able)
        parts = ", ".join(f"{v} {k}" for k, v in sorted(doing.items(), key=lambda kv: (-kv[1],
                                                                                   kv[0])))
        who = "The one agent who could take it is" if n == 1 else \
            f"All {n} agents who could take it are"
        return f"{who} occupied: {parts}"

    @staticmethod
    def _doing(agent: Agent, channel: Channel, matrix: Any) -> str:
        """What an eligible agent is doing, seen from one channel of one queue."""
        status = agent.status
        if status is Presence.OFFLINE:
            return "offline"
        if status is Presence.BREAK:
            return "break"
        if status is Presence.NOT_RESPONDING:
            return "not_responding"
        if agent.can_take(channel, matrix):
            return "available"
        if agent.wrapping:
            return "wrap_up"
        return "busy"

    def _track_presence(self) -> None:
        """Each touched agent's displayed presence; a change dates from their latest event."""
        moved, self._moved = self._moved, {}
        agents, known = self.router.agents, self._presence
        for agent_id, at in moved.items():
            agent = agents.get(agent_id)
            if agent is None:
                known.pop(agent_id, None)
                continue
            presence = agent.presence(self.router.matrix_of(agent)).value
            old = known.get(agent_id)
            if old is None or old[0] != presence:
                known[agent_id] = (presence, at)

    def _agent_live(self, agent: Agent, now: float) -> AgentLive:
        r = self.router
        presence = agent.presence(r.matrix_of(agent)).value
        known = self._presence.get(agent.id)
        if known is not None and known[0] == presence:
            since = known[1]
        else:  # not seen changing here: from their last chosen status
            since = agent.status_since or None
            self._presence[agent.id] = (presence, since)
        held = tuple(self._task_live(r.tasks[t], now) for t in sorted(agent.held)
                     if t in r.tasks)
        offer = None
        if agent.offer_task_id is not None and agent.offer_task_id in r.tasks:
            offer = self._task_live(r.tasks[agent.offer_task_id], now)
        return AgentLive(
            id=agent.id, name=agent.name, presence=presence, status=agent.status.value,
            reason=agent.break_reason, since=since, queues=tuple(sorted(agent.queues)),
            skills=dict(sorted(agent.skills.items())),
            channels=tuple(sorted(c.value for c in agent.channels - agent.paused)),
            tasks=held, offer=offer)

    def _series(self) -> Series:
        f = self.figures
        if f is None:
            return Series()
        starts, levels, email, phone, arrived, handled, depth = [], [], [], [], [], [], []
        for b in f.buckets:
            starts.append(f.bucket_start(b))
            cell = f.cell("all", "", b)
            c = cell.counts
            levels.append(_ratio(c.get("sl_met", 0), c.get("sl_total", 0)))
            arrived.append(c.get("tasks_arrived", 0))
            handled.append(c.get("tasks_handled", 0))
            depth.append(cell.depth_max or 0)
            for channel, out in (("email", email), ("phone", phone)):
                cc = f.cell("channel", channel, b).counts
                out.append(_ratio(cc.get("sl_met", 0), cc.get("sl_total", 0)))
        return Series(tuple(starts), tuple(levels), tuple(email), tuple(phone),
                      tuple(arrived), tuple(handled), tuple(depth),
                      wait_bins=_bins(f.cell("channel", "phone"), "answer_wait",
                                      PHONE_WAIT_EDGES),
                      response_bins=_bins(f.cell("channel", "email"), "first_response",
                                          EMAIL_RESPONSE_EDGES))


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _bins(cell: Any, name: str, edges: tuple[float, ...]) -> tuple[int, ...]:
    stat = cell.stats.get(name)
    if stat is None or stat.bins is None:
        return (0,) * (len(edges) + 1)
    return tuple(stat.bins)


class Balancing:
    """A supervisor's balancing actions. Each returns the Deferred of the committed outcome,
    or fails with the DomainError that refused it (nothing changed then)."""

    def __init__(self, assignment: Assignment, configuration: Configuration,
                 sessions: Sessions) -> None:
        self.assignment = assignment
        self.router = assignment.router
        self.configuration = configuration
        self.sessions = sessions

    def _run(self, method, *args, **kwargs) -> Deferred[Outcome]:
        try:
            outcome = method(*args, **kwargs)
        except DomainError as exc:
            return fail(exc)
        return self.assignment.apply(outcome)

    def configure_agent(self, supervisor_id: str, agent_id: str,
                        queues: Iterable[str] | None = None,
                        skills: Mapping[str, int] | None = None) -> Deferred[Outcome]:
        """Move an agent between queues (`queues`: the full new set) and/or change their
        skills and levels (`skills`: the full new map); stored first, then routed at once."""
        agent = self.router.agents.get(agent_id)
        if agent is None:
            return fail(UnknownAgent(agent_id))
        try:
            config = Agent(
                agent.id, name=agent.name,
                skills=dict(agent.skills if skills is None else skills),
                queues=set(agent.queues if queues is None else queues),
                capacity=dict(agent.capacity), channels=set(agent.channels),
                disabled=agent.disabled)
        except DomainError as exc:
            return fail(exc)
        return ensureDeferred(self.configuration.change_agent(
            config, actor=ev.supervisor_actor(supervisor_id)))

    def set_presence(self, supervisor_id: str, agent_id: str, status: str,
                     reason: str | None = None) -> Deferred[Outcome]:
        """Put an agent available, on a break (with a reason) or offline (their assigned tasks
        go back to their queues, wrap-ups are completed)."""
        if self.router.agents.get(agent_id) is None:
            return fail(UnknownAgent(agent_id))
        return self.sessions.set_status(agent_id, status, reason,
                                        actor=ev.supervisor_actor(supervisor_id))

    def set_priority(self, supervisor_id: str, task_id: str, priority: int
                     ) -> Deferred[Outcome]:
        return self._run(self.router.set_priority, task_id, priority, self.assignment.now(),
                         ev.supervisor_actor(supervisor_id))

    def redirect(self, supervisor_id: str, task_id: str, queue: str | None = None,
                 agent_id: str | None = None) -> Deferred[Outcome]:
        """Send an open task to another queue or offer it to a named agent."""
        return self._run(self.router.redirect, task_id, self.assignment.now(),
                         ev.supervisor_actor(supervisor_id), queue, agent_id)

    def take_back(self, supervisor_id: str, task_id: str, reason: str = "supervisor"
                  ) -> Deferred[Outcome]:
        return self._run(self.router.take_back, task_id, self.assignment.now(),
                         ev.supervisor_actor(supervisor_id), reason or "supervisor")
