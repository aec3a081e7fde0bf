"""The router: which task goes to which agent, decided in memory with a flat cost per decision.

Pure domain: no I/O, no clock (every call takes `now`). The service layer calls one method per
outside event and gets an `Outcome` back: the events to log, the offers to push and time, the
offers that ended, the tasks whose rows changed.

How the cost stays flat. Tasks are grouped in *buckets*: one per (queue, channel, current
requirement). A bucket keeps two orders with lazy deletion (heaps; the agents' order also keeps
the entries that arrive in order apart, in a run whose front is taken in O(1): `Bucket.run`):
  - its waiting tasks, ordered by (priority desc, due time, arrival, sequence), where a
    task's priority is its own plus its queue's (added here and nowhere else: intake never
    copies the queue's priority into the task, so a queue's change re-orders its tasks);
  - the agents who are eligible (member of the queue, handle the channel, meet the
    requirement) and able to take that channel right now, ordered by the queue's agent choice
    (longest idle, or highest skill then longest idle).
Each bucket also remembers the live head of its task heap. An agent knows the buckets they are
eligible for. So:
  - a new task looks at the head of one agent heap;
  - a freed agent looks at the head of each of their buckets' task heaps and takes the best
    (one global order across every queue they serve);
  - a change of an agent's availability touches only their own buckets.
None of these depends on the number of agents or on the queue depth (heaps cost log n).
Invariant: no waiting task has an available eligible agent who has not declined it, except a
task reserved for another agent (below).

The hot path (submit, accept, complete) avoids work that does not change the answer: what an
agent can take now is computed once per call and handed on (`_serve_or_list`), from a cached
list of the channels they handle (kept while their configuration is the same objects), and cached
itself while they hold tasks of one channel only (per channel and count); an
agent's heap entry is renewed only where their key changed; the common calls are written out
rather than spread over helpers; an agent who becomes idle goes at the end of each bucket's run
(no heap push), and an agent who takes an offer leaves stale entries at the fronts of their
buckets, dropped in O(1) each. The events, offers and explanations are the same as the plain
version's, in the same order.

Explanations. Every `task.offered` carries `explanation`: the rule and its keys (`rule`,
`requirement`, `eligible`, `available`, `skipped`: the agents, or for `best_task_for_agent` the
tasks, passed over because they were declined), `offered` (the agent chosen), `passed` (at most
MAX_EXPLAINED members not chosen, each `{"agent", "reason", ...}`: declined it, let an offer of
it expire, on break, offline, not responding, disabled, another offer pending, the channel
paused, unreachable or engaged outside routing, no free slot on the channel, the interruption
matrix, or not eligible with `_ineligible_reason`'s words) and `counts` (members, eligible,
available, declined, expired, and how many of those available, not available and not eligible
were not named). Named are those the decision weighed: always the ones who declined the task
or let an offer of it expire; when a task looks for an agent (`_best_agent`: an arrival, a
return to the queue) also a sample of EXPLAIN_SAMPLE members not available now and as many
not eligible. When an agent looks for a task (`best_task_for_agent`, and a task kept for its
preferred agent: "sticky") no other agent was weighed (the invariant above: nobody else eligible
was free), so the counts alone tell the rest. The cost stays flat: the counts are set sizes
(O(1)); the named ones come from the task's declines and expiries, then from at most
EXPLAIN_LOOK of the bucket's eligible agents and EXPLAIN_LOOK of the queue's members, taken from
the sets without scanning them all (so which ones are named among many is the sets' order, not a
ranking). Naming costs about a microsecond an agent, hence the small sample, and none on the
freed agent's path (the hot one). An offer to a named agent (rules "transfer", "supervisor")
weighed nobody else: `passed` is empty, `counts` holds `members` only. Expiries are kept in
memory only (a restart forgets them; declines are in the log). Words are made from all this
elsewhere (explanations.py), never here.

Stickiness (a reply to a completed e-mail goes back to the agent who handled it). A task whose
attributes name a `preferred_agent` and a `preferred_until` (epoch seconds) in the future is
offered to that agent when they are eligible and free (rule "sticky"). When they are eligible
but not free, the task is *reserved*: it waits in that agent's own small list (not in any
bucket) and `_serve` offers it to them before anything else. The preference ends (the task is
then placed normally, the end logged as `task.changed` and `preferred_until` set to the time it
ended) when its time is over (`unstick`, called by the service's timer), or at once when the
agent is unknown, not eligible, declined the task or let an offer of it expire. An accepted
task has served its preference. Push queues only: in a pull queue anyone may pick the task.
The cost on the hot path is one test of an empty dict per decision while nothing is sticky.

Pull queues: nothing is offered; an agent picks (`pick`) from the list of what they could take
(`pull_list`, in the order the router serves). Wrap-up: it ends by itself at the end of its
window (`wrap_up_window`, kept in the task's attributes under WRAP_UP_ATTRIBUTE, so that it
survives a restart); the agent may extend it up to the window's limit (`extend_wrap_up`).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard

from . import events as ev
from .agents import DEFAULT_INTERRUPTIONS, Agent, InterruptionMatrix, Presence, meets
from .callbacks import NOT_BEFORE, held_until
from .errors import (
    DuplicateTask,
    Forbidden,
    IllegalTransition,
    InUse,
    InvalidValue,
    NotEligible,
    OfferNotCurrent,
    TaskTaken,
    UnknownAgent,
    UnknownQueue,
    UnknownTask,
)
from .offers import Offer
from .queues import MAX_WRAP_UP_EXTENSION, AgentChoice, Mode, Queue
from .requirements import Condition
from .tasks import MAX_PRIORITY, MIN_PRIORITY, TRANSITIONS, Channel, Task, TaskState

# At most this many skipped candidates, and as many agents passed over, are named in one
# decision's explanation (the counts cover the rest).
MAX_EXPLAINED = 10
# Of those a decision weighed, at most this many agents not available now, and as many members
# not eligible, are named (a sample: the counts cover the rest); to find them, at most
# EXPLAIN_LOOK eligible agents and as many members are looked at.
EXPLAIN_SAMPLE = 3
EXPLAIN_LOOK = 16
# A heap is rebuilt without its stale entries when it grows beyond this factor of its live size.
COMPACT_FACTOR = 4
COMPACT_MIN = 64
# A queue with at most this many buckets finds a task's bucket by comparing requirements.
FEW_BUCKETS = 4
_NO_CHANNELS: frozenset[Channel] = frozenset()
# The task attribute holding the wrap-up's window: {"until": end, "limit": latest end}.
WRAP_UP_ATTRIBUTE = "wrap_up"
# At most this many open tasks are named when a removal is refused.
SHOWN_TASKS = 5
# An explanation's reason for an agent whose status keeps them from any offer (but a break).
_STATUS_REASONS = {Presence.OFFLINE: "offline", Presence.NOT_RESPONDING: "not_responding"}


def refuse_open_work(tasks: Iterable[Task], *, queue: str | None = None,
                     agent_id: str | None = None) -> None:
    """The rule: a queue (an agent) is neither removed nor disabled while open work waits in
    it (is offered to or held by them). Raises InUse naming the oldest of those tasks; `tasks`:
    the open tasks (the router's, or the database's when no router runs)."""
    if queue is not None:
        what, verb = f"queue {queue}", "has"
        found = [t for t in tasks if t.queue == queue]
    else:
        what, verb = f"agent {agent_id}", "holds"
        found = [t for t in tasks if t.agent_id == agent_id]
    if not found:
        return
    found.sort(key=lambda t: t.created_at)
    shown = ", ".join(f"{t.attributes.get('request') or t.id} ({t.state.value})"
                      for t in found[:SHOWN_TASKS])
    more = f" and {len(found) - SHOWN_TASKS} more" if len(found) > SHOWN_TASKS else ""
    raise InUse(f"{what} {verb} {len(found)} open task(s): {shown}{more}; wait until they are "
                f"done (or move them from the wallboard), then try again")


@dataclass(slots=True, init=False)
class Outcome:
    """What one call changed. `tasks` holds the tasks whose rows must be written (closed ones
    included, in their final state)."""

    events: list[ev.Event] = field(default_factory=list)
    offers: list[Offer] = field(default_factory=list)
    ended: list[Offer] = field(default_factory=list)
    tasks: dict[str, Task] = field(default_factory=dict)
    declines: list[tuple[str, str]] = field(default_factory=list)

    # Written out: the generated one (default factories) costs twice as much, once per call.
    def __init__(self, events: list[ev.Event] | None = None, offers: list[Offer] | None = None,
                 ended: list[Offer] | None = None, tasks: dict[str, Task] | None = None,
                 declines: list[tuple[str, str]] | None = None) -> None:
        self.events = [] if events is None else events
        self.offers = [] if offers is None else offers
        self.ended = [] if ended is None else ended
        self.tasks = {} if tasks is None else tasks
        self.declines = [] if declines is None else declines

    def touch(self, task: Task) -> None:
        self.tasks[task.id] = task

    def merge(self, more: Outcome) -> Outcome:
        """Add what `more` changed (after what this one changed); returns self."""
        self.events.extend(more.events)
        self.offers.extend(more.offers)
        self.ended.extend(more.ended)
        self.tasks.update(more.tasks)
        self.declines.extend(more.declines)
        return self


class Bucket:
    """Tasks of one queue and channel with one requirement, and the agents able to take them."""

    # What a freed agent reads in each of their buckets comes first (one cache line).
    __slots__ = (
        "push", "channel", "head", "task_live", "queue", "requirement", "condition", "tasks",
        "agents", "run", "agent_live", "eligible", "levels", "by_skill", "rule", "key",
    )

    def __init__(self, queue: Queue, channel: Channel, requirement: dict[str, int],
                 condition: Condition | None = None, key: tuple = ()) -> None:
        self.queue = queue.name
        self.channel = channel
        self.requirement = requirement
        self.condition = condition  # the bound requirement expression, if any
        self.key = key  # in Router._buckets
        self.tasks: list[tuple] = []  # (-priority, due, created_at, seq, task_id)
        self.task_live: dict[str, int] = {}  # task id -> seq of its live entry
        # The live head of `tasks`, or None when not known (recomputed by head_task): a freed
        # agent compares the heads of all their buckets, and this saves a walk to each heap.
        self.head: tuple | None = None
        # The agents' entries, (k1, k2, seq, agent_id), with lazy deletion, in two parts: `run`,
        # entries in order (a new entry that sorts after the last one is appended: the usual
        # case, as an agent's key is the time they became idle), and the heap `agents` for the
        # rest. The best agent is the lesser of the two fronts; taking the front of `run` costs
        # O(1) where a heap costs O(log n), and an agent in many queues is at the front of many.
        self.agents: list[tuple] = []
        self.run: deque[tuple] = deque()
        self.agent_live: dict[str, tuple] = {}  # agent id -> its live entry
        self.eligible: set[str] = set()
        # eligible agent id -> minus the sum of their levels in the required skills
        self.levels: dict[str, float] = {}  # floats, as the idle times beside them in a key
        self.push = self.by_skill = False
        self.rule = AgentChoice.LONGEST_IDLE.value
        self.configure(queue)

    def configure(self, queue: Queue) -> None:
        """Copy what the hot path needs from the queue's configuration."""
        self.push = queue.mode is Mode.PUSH
        self.by_skill = queue.agent_choice is AgentChoice.HIGHEST_SKILL
        self.rule = queue.agent_choice.value  # the explanation's rule when a task finds an agent

    def admit(self, agent: Agent) -> None:
        self.eligible.add(agent.id)
        skills = agent.skills
        level = sum(skills.get(s, 0) for s in self.requirement)
        if self.condition is not None:  # the skills the expression reads count as well
            level += sum(skills[s] for s in self.condition.names
                         if s in skills and s not in self.requirement)
        self.levels[agent.id] = -float(level)

    def dismiss(self, agent_id: str) -> None:
        self.eligible.discard(agent_id)
        self.levels.pop(agent_id, None)
        self.agent_live.pop(agent_id, None)

    def head_task(self) -> tuple | None:
        if self.head is not None:
            return self.head
        heap, live = self.tasks, self.task_live
        while heap:
            entry = heap[0]
            if live.get(entry[4]) == entry[3]:
                self.head = entry
                return entry
            heapq.heappop(heap)
        return None

    def compact(self) -> None:
        if len(self.tasks) > COMPACT_MIN and len(self.tasks) > COMPACT_FACTOR * len(self.task_live):
            self.tasks = [e for e in self.tasks if self.task_live.get(e[4]) == e[3]]
            heapq.heapify(self.tasks)
        listed = len(self.agents) + len(self.run)
        if listed > COMPACT_MIN and listed > COMPACT_FACTOR * len(self.agent_live):
            live = self.agent_live
            self.agents = [e for e in self.agents if live.get(e[3]) is e]
            heapq.heapify(self.agents)
            self.run = deque(e for e in self.run if live.get(e[3]) is e)

    def list_agent(self, entry: tuple) -> None:
        """Make `entry` its agent's live entry (in `run` when it sorts after its last one)."""
        self.agent_live[entry[3]] = entry
        run = self.run
        if not run or entry > run[-1]:
            run.append(entry)
        else:
            heapq.heappush(self.agents, entry)
        listed = len(run) + len(self.agents)
        if listed > COMPACT_MIN and listed > COMPACT_FACTOR * len(self.agent_live):
            self.compact()

    def best_agents(self) -> Iterator[tuple]:
        """The live entries in order, best first, each taken out as it is given (the caller
        puts back what it took: `put_back`); stale entries met are dropped."""
        run, heap, live = self.run, self.agents, self.agent_live
        while True:
            while run and live.get(run[0][3]) is not run[0]:
                run.popleft()
            while heap and live.get(heap[0][3]) is not heap[0]:
                heapq.heappop(heap)
            if run and (not heap or run[0] < heap[0]):
                yield run.popleft()
            elif heap:
                yield heapq.heappop(heap)
            else:
                return

    def put_back(self, entries: list[tuple]) -> None:
        """Put back entries taken by `best_agents` (given in the order they were taken)."""
        for entry in entries:
            heapq.heappush(self.agents, entry)


class _Handled:
    """An agent's configuration as `_open_channels` reads it, cached while their `channels` and
    `capacity` are the same objects (a configuration change replaces both): the channels they
    handle with some capacity (`open`), and what they can take while holding n tasks of one
    channel and nothing else (`holding[(channel, n)]`, filled on first use, under `matrix`)."""

    __slots__ = ("channels", "capacity", "matrix", "open", "holding")

    def __init__(self, channels: set[Channel], capacity: dict[Channel, int],
                 matrix: InterruptionMatrix) -> None:
        self.channels = channels
        self.capacity = capacity
        self.matrix = matrix
        self.open = tuple(ch for ch in channels if capacity.get(ch, 0) > 0)
        self.holding: dict[tuple[Channel, int], tuple[Channel, ...]] = {}


def _order(task: Task, queue: Queue) -> tuple[int, float, float]:
    """The order key of a waiting task: the queue's priority is added here, and only here
    (`Router._enqueue` builds the same key inline: keep the two alike)."""
    return (-(task.priority + queue.priority), queue.due(task), task.created_at)


def _counter_ids(prefix: str = "o") -> Callable[[], str]:
    return map((prefix + "{}").format, itertools.count(1)).__next__


class Router:
    """The routing state of one dispatcher: queues, agents, open tasks, pending offers."""

    def __init__(
        self,
        matrix: InterruptionMatrix = DEFAULT_INTERRUPTIONS,
        new_offer_id: Callable[[], str] | None = None,
    ) -> None:
        self.matrix = matrix
        # Queues whose calls are at risk and that keep a reserve of agents for them
        # (`set_reserve`): empty in the usual case, and then nothing on the hot path asks.
        self.reserving: set[str] = set()
        self.new_offer_id = new_offer_id or _counter_ids()
        self.queues: dict[str, Queue] = {}
        self.agents: dict[str, Agent] = {}
        self.tasks: dict[str, Task] = {}  # open tasks only
        self.offers: dict[str, Offer] = {}
        self.declined: dict[str, set[str]] = {}
        # Open task id -> agents who let an offer of it expire (for explanations only: not kept
        # across a restart; empty while no offer expires).
        self._expired: dict[str, set[str]] = {}
        self._buckets: dict[tuple, Bucket] = {}
        self._queue_buckets: dict[str, list[Bucket]] = {}
        self._members: dict[str, set[str]] = {}
        self._agent_buckets: dict[str, list[Bucket]] = {}
        # Agents who may have a live entry in some agent heap (a superset): taking out an agent
        # who is in none costs nothing.
        self._listed: set[str] = set()
        # A cache (derived, rebuilt when missing or stale): agent id -> `_Handled` (their
        # channels and capacity, the channels they handle with some capacity, what they can take
        # while holding n tasks of one channel), for `_open_channels`.
        self._handled: dict[str, _Handled] = {}
        self._seq = itertools.count()
        # Stickiness: task id -> (preferred agent, until) while the preference holds;
        # reserved (waiting) task id -> (agent id, its entry); agent id -> entries of the tasks
        # reserved for them (a plain list: a handful at most). All empty when nothing sticks.
        self._prefs: dict[str, tuple[str, float]] = {}
        self._reserved: dict[str, tuple[str, tuple]] = {}
        self._sticky: dict[str, list[tuple]] = {}
        # Waiting tasks held aside until a time (`park`: a callback before its window opens or
        # between attempts): task id -> until. Not in any bucket, never offered; empty usually.
        self._parked: dict[str, float] = {}
        # Channels a newly added agent cannot be reached on until a device says otherwise (set
        # when phones decide who takes calls: a new agent has no registered phone yet).
        self.unreachable_at_first: set[Channel] = set()

    # ------------------------------------------------------------------ configuration

    def put_queue(self, queue: Queue, now: float) -> Outcome:
        """Add or replace a queue's configuration; waiting tasks are re-ordered and, when the
        queue now pushes, offered to whoever can take them."""
        old = self.queues.get(queue.name)
        self.queues[queue.name] = queue
        self._members.setdefault(queue.name, set())
        self._queue_buckets.setdefault(queue.name, [])
        out = Outcome()
        if old is not None:
            for b in self._queue_buckets[queue.name]:
                b.configure(queue)
                self._rebuild(b)
            if self._reserved:
                self._rekey_reserved(queue)
            if [r and r.text for r in old.requirements] != [
                    r and r.text for r in queue.requirements]:
                self._rebind(queue, now, out)
            if queue.mode is Mode.PUSH:
                self._drain(queue.name, now, out)
        return out

    def _rebind(self, queue: Queue, now: float, out: Outcome) -> None:
        """The queue's requirement expressions changed: every open task of it is bound to the
        new ones (a task held by an agent keeps them, and takes them with it if requeued);
        a waiting task moves to the bucket of its new condition (where it may be offered)."""
        for task in [t for t in self.tasks.values() if t.queue == queue.name]:
            cond = queue.condition_at(task)
            if cond == task.condition:
                continue
            task.condition = cond
            if task.state is TaskState.QUEUED and task.bucket is not None:
                self._unbucket(task)
                self._place(task, now, out)

    def put_agent(self, agent: Agent, now: float, actor: str = ev.SYSTEM) -> Outcome:
        """Add an agent, or replace an agent's configuration (name, skills, queues, capacity,
        channels, disabled) keeping their status and their work. `actor`: who changed it (a
        supervisor moving an agent between queues is audited in the `agent.changed` event). A
        disabled agent is offered nothing; one who holds nothing goes offline (their pending
        offer withdrawn)."""
        for q in agent.queues:
            if q not in self.queues:
                raise UnknownQueue(q)
        cur = self.agents.get(agent.id)
        out = Outcome()
        if cur is None:
            cur = replace(agent, queues=set(agent.queues), capacity=dict(agent.capacity),
                          channels=set(agent.channels), held=dict(agent.held),
                          wrapping=set(agent.wrapping), paused=set(agent.paused),
                          unreachable=set(agent.unreachable) | self.unreachable_at_first,
                          engaged=set(agent.engaged))
            self.agents[agent.id] = cur
        else:
            for q in cur.queues - agent.queues:
                self._members[q].discard(cur.id)
            cur.name, cur.skills, cur.queues = agent.name, dict(agent.skills), set(agent.queues)
            cur.attributes, cur.interruptions = dict(agent.attributes), agent.interruptions
            cur.capacity, cur.channels = dict(agent.capacity), set(agent.channels)
            cur.disabled = agent.disabled
            cur.paused &= cur.channels
            out.events.append(ev.Event(ev.AGENT_CHANGED, now, agent_id=cur.id, actor=actor,
                                       data={"queues": sorted(cur.queues),
                                             "skills": dict(cur.skills)}))
            if cur.disabled and cur.status is not Presence.OFFLINE and not cur.held:
                out.merge(self.set_status(cur.id, Presence.OFFLINE, now, None, actor))
        for b in self._agent_buckets.get(cur.id, ()):
            b.dismiss(cur.id)
        mine: list[Bucket] = []
        for q in cur.queues:
            self._members[q].add(cur.id)
            for b in self._queue_buckets[q]:
                if self._eligible(cur, b.channel, b.requirement, b.condition):
                    b.admit(cur)
                    mine.append(b)
        self._agent_buckets[cur.id] = mine
        self._refresh(cur)
        if cur.id in self._sticky:
            self._release_reserved(cur, now, out)
        self._serve(cur, now, out)
        return out

    def remove_queue(self, name: str, now: float, actor: str = ev.SYSTEM) -> Outcome:
        """Remove a queue in which no open work waits (InUse otherwise: `refuse_open_work`);
        its members lose it (`queue.removed`, data: queue, members)."""
        self._queue(name)
        refuse_open_work(self.tasks.values(), queue=name)
        members = sorted(self._members.pop(name, ()))
        for b in self._queue_buckets.pop(name, ()):
            del self._buckets[b.key]
            for agent_id in b.eligible:
                mine = self._agent_buckets.get(agent_id)
                if mine is not None:
                    mine[:] = [x for x in mine if x is not b]
        for agent_id in members:
            self.agents[agent_id].queues.discard(name)
        del self.queues[name]
        return Outcome(events=[ev.Event(ev.QUEUE_REMOVED, now, None, None, actor,
                                        {"queue": name, "members": members})])

    def remove_agent(self, agent_id: str, now: float, actor: str = ev.SYSTEM) -> Outcome:
        """Remove an agent who holds no open work, offers included (InUse otherwise:
        `refuse_open_work`); signed in, they go offline first; the tasks reserved for them
        are placed as usual (`agent.removed`)."""
        agent = self._agent(agent_id)
        refuse_open_work(self.tasks.values(), agent_id=agent_id)
        out = Outcome()
        if agent.status is not Presence.OFFLINE:
            out.merge(self.set_status(agent_id, Presence.OFFLINE, now, None, actor))
        self._unlist(agent_id)
        self._handled.pop(agent_id, None)
        for b in self._agent_buckets.pop(agent_id, ()):
            b.dismiss(agent_id)
        for q in agent.queues:
            self._members.get(q, set()).discard(agent_id)
        for entry in list(self._sticky.get(agent_id, ())):
            task = self.tasks[entry[4]]
            self._unreserve(task.id)
            self._end_preference(task, now, out, "agent_removed")
            self._place(task, now, out)
        for declined in self.declined.values():
            declined.discard(agent_id)
        del self.agents[agent_id]
        out.events.append(ev.Event(ev.AGENT_REMOVED, now, None, agent_id, actor,
                                   {"id": agent_id}))
        return out

    # ------------------------------------------------------------------ tasks

    def submit(self, task: Task, now: float) -> Outcome:
        """A new task: queue it and offer it to the best available agent, if any."""
        if task.id in self.tasks:
            raise DuplicateTask(task.id)
        queue = self.queues.get(task.queue) or self._queue(task.queue)
        task.required_skills = queue.requirement_at(task.base_skills, task.step)
        task.condition = queue.condition_at(task)
        task.bucket = None  # the router's own: a copy of another task may bring one
        self.tasks[task.id] = task
        out = Outcome()
        out.events.append(
            ev.Event(ev.TASK_QUEUED, now, task.id, data={"reason": "new", "priority": task.priority})
        )
        if task.attributes:
            self._note_preference(task, now)
            if NOT_BEFORE in task.attributes and (until := held_until(task.attributes, now)):
                self._parked[task.id] = until  # a callback before its window: held aside
        if task.step != len(queue.steps):
            self._catch_up_steps(task, now, out)
        self._place(task, now, out)
        return out

    def withdraw(self, task_id: str, now: float, reason: str, actor: str = ev.SYSTEM) -> Outcome:
        """Take back the pending offer of `task_id` without blaming its agent (nothing when it
        has none): the task waits again with its original age (`_place`), the agent is free."""
        out = Outcome()
        task = self._task(task_id)
        offer = self.offers.get(task.offer_id or "")
        if offer is None:
            return out
        agent = self.agents[offer.agent_id]
        self._withdraw(offer, now, out, reason, actor)
        self._serve_or_list(agent, now, out)
        return out

    def park(self, task_id: str, until: float, now: float, reason: str = "parked") -> Outcome:
        """Hold an open task aside until `until` (a callback before its window, or between
        attempts): it keeps its age and queue but is offered to nobody; `unpark` (the
        service's timer) puts it back in its place. A pending offer is taken back first; an
        assigned task is taken back from its agent (`task.requeued`, `reason`)."""
        task = self._task(task_id)
        if task.state not in (TaskState.QUEUED, TaskState.OFFERED, TaskState.ASSIGNED):
            raise IllegalTransition(task_id, task.state.value, "parked")
        if task_id not in self._parked and task.state is TaskState.QUEUED:
            self._unbucket(task)
        self._parked[task_id] = until  # first: the `_place` that follows leaves it aside
        if task.state is TaskState.ASSIGNED:
            out = self.requeue(task_id, now, reason)
        else:
            out = self.withdraw(task_id, now, reason)
        out.touch(task)
        return out

    def unpark(self, task_id: str, now: float) -> Outcome:
        """The parked task's time has come: it waits in its place again (and may be offered at
        once). A no-op for a task not parked."""
        out = Outcome()
        if self._parked.pop(task_id, None) is None:
            return out
        task = self.tasks[task_id]
        self._catch_up_steps(task, now, out)
        self._place(task, now, out)
        return out

    def parked(self) -> dict[str, float]:
        """Parked task id -> until (a copy)."""
        return dict(self._parked)

    def unstick(self, task_id: str, now: float) -> Outcome:
        """The stickiness timer fired: the task's preference for one agent is over; a task
        still waiting for that agent is placed normally. A no-op when the preference already
        ended or is not due yet (timers and decisions may race)."""
        out = Outcome()
        pref = self._prefs.get(task_id)
        if pref is None or pref[1] > now:
            return out
        task = self.tasks[task_id]
        self._end_preference(task, now, out, "timeout")
        if task_id in self._reserved:
            self._unreserve(task_id)
            self._place(task, now, out)
        return out

    def sticky_until(self, task_id: str) -> float | None:
        """When the open task's preference for one agent ends (None: it has none)."""
        pref = self._prefs.get(task_id)
        return None if pref is None else pref[1]

    def reserved_for(self, task_id: str) -> str | None:
        """The agent a waiting task is reserved for (None: it waits for anyone)."""
        held = self._reserved.get(task_id)
        return None if held is None else held[0]

    def escalate(self, task_id: str, now: float) -> Outcome:
        """An escalation timer fired: apply every step now due to a waiting task. A task that is
        offered right now is escalated when its offer ends."""
        out = Outcome()
        task = self.tasks.get(task_id)
        if task is None or task.state is not TaskState.QUEUED:
            return out
        if self._catch_up_steps(task, now, out):
            self._unbucket(task)
            self._place(task, now, out)
        return out

    def step_due(self, task_id: str) -> float | None:
        """When the waiting task's next escalation step is due (None: no more steps)."""
        task = self.tasks.get(task_id)
        if task is None or task.state not in (TaskState.QUEUED, TaskState.OFFERED):
            return None
        return self.queues[task.queue].step_due(task)

    def cancel(self, task_id: str, now: float, reason: str, actor: str = ev.SYSTEM) -> Outcome:
        """Cancel an open task (queued, offered or assigned)."""
        return self._close(task_id, TaskState.CANCELLED, now, actor, {"reason": reason})

    def abandon(self, task_id: str, now: float, actor: str = ev.SYSTEM) -> Outcome:
        """The customer left while waiting (a caller hung up): queued or offered only."""
        task = self._task(task_id)
        return self._close(
            task_id, TaskState.ABANDONED, now, actor, {"waited": now - task.created_at}
        )

    def requeue(self, task_id: str, now: float, reason: str, actor: str = ev.SYSTEM) -> Outcome:
        """Take an assigned task back from its agent and queue it again (original age kept)."""
        task = self._task(task_id)
        out = Outcome()
        if task.state is not TaskState.ASSIGNED:
            raise IllegalTransition(task_id, task.state.value, TaskState.QUEUED.value)
        agent = self.agents[task.agent_id]  # type: ignore[index]  # assigned: it has an agent
        self._release(agent, task.id, now)
        task.move(TaskState.QUEUED, now)
        task.agent_id = None
        out.events.append(
            ev.Event(ev.TASK_REQUEUED, now, task.id, agent.id, actor, {"reason": reason})
        )
        self._catch_up_steps(task, now, out)
        self._place(task, now, out)
        self._serve(agent, now, out)
        return out

    def transfer(self, task_id: str, now: float, actor: str, queue: str | None = None,
                 agent_id: str | None = None) -> Outcome:
        """Move an assigned task to another queue (routed there afresh, original age kept, the
        new queue's requirement plus the task's own extra skills) or offer it to a named agent,
        who must be able to take its channel now (skills are the transferring person's call;
        a reject sends it to the queue, never back to that agent)."""
        task = self._task(task_id)
        if (queue is None) == (agent_id is None):
            raise InvalidValue("transfer to exactly one of a queue or an agent")
        if task.state is not TaskState.ASSIGNED:
            raise IllegalTransition(task_id, task.state.value, TaskState.QUEUED.value)
        holder = self.agents[task.agent_id]  # type: ignore[index]  # assigned: it has an agent
        target: Agent | None = None
        if agent_id is not None:
            target = self._agent(agent_id)
            if target.id == holder.id:
                raise InvalidValue("the task is already with that agent")
            self._check_free(target, task)
        old_queue = self.queues[task.queue]
        new_queue = self._queue(queue) if queue is not None else old_queue
        out = Outcome()
        self._release(holder, task.id, now)
        task.move(TaskState.QUEUED, now)
        task.agent_id = None
        # Whoever passed the task on is not offered it back.
        self.declined.setdefault(task.id, set()).add(holder.id)
        out.declines.append((task.id, holder.id))
        data: dict[str, str | None] = {"from_agent": holder.id, "from_queue": old_queue.name}
        if new_queue is not old_queue:
            self._rehome(task, old_queue, new_queue, now)
            data["to_queue"] = new_queue.name
        else:
            data["to_agent"] = agent_id
        out.events.append(ev.Event(ev.TASK_TRANSFERRED, now, task.id, holder.id, actor, data))
        if target is not None:
            self._offer(task, target, now, out, {
                "rule": "transfer", "requirement": task.required_skills, "eligible": 1,
                "available": 1, "skipped": {}, "from_agent": holder.id, "by": actor})
        else:
            self._catch_up_steps(task, now, out)
            self._place(task, now, out)
        out.touch(task)
        self._serve(holder, now, out)
        return out

    # ------------------------------------------------------------------ agents

    def set_status(
        self,
        agent_id: str,
        status: Presence,
        now: float,
        reason: str | None = None,
        actor: str | None = None,
    ) -> Outcome:
        """The agent (or a supervisor) chooses available, break (with a reason) or offline.
        Leaving `available` withdraws a pending offer; going offline also returns assigned
        tasks to their queues and completes wrap-ups."""
        if status not in (Presence.AVAILABLE, Presence.BREAK, Presence.OFFLINE):
            raise InvalidValue(f"an agent cannot choose the status {status.value}")
        agent = self._agent(agent_id)
        actor = actor or ev.agent_actor(agent_id)
        out = Outcome()
        was = agent.status
        agent.status = status
        agent.break_reason = reason if status is Presence.BREAK else None
        agent.status_since = now
        if status is Presence.OFFLINE:
            agent.paused = set()  # per-channel presence starts afresh at the next sign-in
        if status is Presence.AVAILABLE and was is not Presence.AVAILABLE:
            agent.idle_since = now
        out.events.append(
            ev.Event(ev.AGENT_STATUS, now, None, agent_id, actor,
                     {"status": status.value, "reason": reason, "was": was.value})
        )
        if status is not Presence.AVAILABLE and agent.offer_id is not None:
            self._withdraw(self.offers[agent.offer_id], now, out, "agent_" + status.value, actor)
        if status is Presence.OFFLINE:
            for task_id in list(agent.held):
                task = self.tasks[task_id]
                if task.state is TaskState.WRAP_UP:
                    self._finish(agent, task, now, out, actor, {"disposition": "logged_out"})
                else:
                    self._release(agent, task_id, now)
                    task.move(TaskState.QUEUED, now)
                    task.agent_id = None
                    out.events.append(
                        ev.Event(ev.TASK_REQUEUED, now, task.id, agent_id, actor,
                                 {"reason": "agent_offline"})
                    )
                    self._catch_up_steps(task, now, out)
                    self._place(task, now, out)
        self._serve_or_list(agent, now, out)
        return out

    def set_channels(self, agent_id: str, channels: Iterable[Channel], now: float,
                     actor: str | None = None) -> Outcome:
        """Per-channel presence: the agent takes new work only on `channels` (a subset of the
        channels they handle), e.g. e-mail but no calls for a while. Runtime state, not
        configuration: it does not change which queues' tasks they could ever take, and it
        resets when they go offline."""
        agent = self._agent(agent_id)
        wanted = set(channels)
        unknown = wanted - agent.channels
        if unknown:
            raise InvalidValue(f"agent {agent_id} does not handle "
                               f"{', '.join(sorted(map(str, unknown)))}")
        out = Outcome()
        paused = agent.channels - wanted
        if paused == agent.paused:
            return out
        agent.paused = paused
        out.events.append(ev.Event(ev.AGENT_CHANNELS, now, None, agent_id,
                                   actor or ev.agent_actor(agent_id),
                                   {"channels": sorted(c.value for c in wanted)}))
        self._serve_or_list(agent, now, out)
        return out

    def set_device(self, agent_id: str, channel: Channel, now: float, *,
                   reachable: bool | None = None, engaged: bool | None = None,
                   actor: str = ev.SYSTEM) -> Outcome:
        """What the agent's device for `channel` says: whether they can be reached on it (a
        phone registered) and whether it is busy outside our routing (a PBX call). Runtime
        state, like per-channel presence. A pending offer on a channel that becomes unreachable
        or engaged is withdrawn and the task goes back to the head of its queue."""
        agent = self._agent(agent_id)
        out = Outcome()
        before = (channel in agent.unreachable, channel in agent.engaged)
        if reachable is not None:
            (agent.unreachable.discard if reachable else agent.unreachable.add)(channel)
        if engaged is not None:
            (agent.engaged.add if engaged else agent.engaged.discard)(channel)
        after = (channel in agent.unreachable, channel in agent.engaged)
        if after == before:
            return out
        out.events.append(ev.Event(ev.AGENT_DEVICE, now, None, agent_id, actor,
                                   {"channel": channel.value, "reachable": not after[0],
                                    "engaged": after[1]}))
        if any(after) and agent.offer_id is not None and agent.offer_channel is channel:
            reason = "device_unreachable" if after[0] else "device_engaged"
            self._withdraw(self.offers[agent.offer_id], now, out, reason, actor)
        if not after[1] and before[1]:
            agent.idle_since = now
        self._serve_or_list(agent, now, out)
        return out

    def accept(self, agent_id: str, offer_id: str, now: float) -> Outcome:
        offer = self.offers.get(offer_id)
        agent = self.agents.get(agent_id)
        if agent is None or offer is None or offer.agent_id != agent_id:
            self._own_offer(agent_id, offer_id)  # raises the right error
            raise AssertionError("not reached")
        task = self.tasks[offer.task_id]
        # _end_offer, inline (the hot path)
        del self.offers[offer_id]
        agent.offer_id = agent.offer_task_id = agent.offer_channel = None
        task.offer_id = task.offer_expires_at = None
        task.move(TaskState.ASSIGNED, now)
        task.agent_id = agent_id
        task_id = task.id
        agent.held[task_id] = task.channel
        agent.idle_since = now
        if self._prefs or task.may_hold("preferred_until"):  # `_served` has work to do
            self._served(task, now)
        actor = "agent:" + agent_id  # ev.agent_actor
        out = Outcome(events=[
            ev.Event(ev.OFFER_ACCEPTED, now, task_id, agent_id, actor, {"offer_id": offer_id}),
            ev.Event(ev.TASK_ASSIGNED, now, task_id, agent_id, actor,
                     {"via": "offer", "offer_id": offer_id})],
            ended=[offer], tasks={task_id: task})
        self._serve_or_list(agent, now, out)
        return out

    def reject(self, agent_id: str, offer_id: str, now: float, reason: str = "",
               engaged: bool = False) -> Outcome:
        """The agent declines: they are never offered this task again. `engaged`: their
        device declined because it is busy (a phone's 486): its channel is engaged outside
        our routing from now on (as `set_device` says), before anything else is offered."""
        offer = self._own_offer(agent_id, offer_id)
        agent, task = self.agents[agent_id], self.tasks[offer.task_id]
        out = Outcome()
        self._end_offer(offer, agent)
        self.declined.setdefault(task.id, set()).add(agent_id)
        out.declines.append((task.id, agent_id))
        out.ended.append(offer)
        out.events.append(ev.Event(ev.OFFER_REJECTED, now, task.id, agent_id,
                                   ev.agent_actor(agent_id),
                                   {"offer_id": offer_id, "reason": reason}))
        if engaged:
            out.merge(self.set_device(agent_id, offer.channel, now, engaged=True))
        self._back_to_queue(task, now, out)
        self._serve_or_list(agent, now, out)
        return out

    def expire(self, offer_id: str, now: float, reason: str = "timeout") -> Outcome:
        """The offer's timer ran out (or the agent's socket dropped): the task goes back with
        its original age and the agent is `not_responding` until they act."""
        out = Outcome()
        offer = self.offers.get(offer_id)
        if offer is None:
            return out  # already ended: timers and accepts may race
        agent, task = self.agents[offer.agent_id], self.tasks[offer.task_id]
        self._end_offer(offer, agent)
        self._expired.setdefault(task.id, set()).add(agent.id)
        out.ended.append(offer)
        out.events.append(ev.Event(ev.OFFER_EXPIRED, now, task.id, agent.id,
                                   data={"offer_id": offer_id, "reason": reason}))
        was = agent.status
        agent.status = Presence.NOT_RESPONDING
        agent.status_since = now
        out.events.append(ev.Event(ev.AGENT_STATUS, now, None, agent.id, ev.SYSTEM,
                                   {"status": Presence.NOT_RESPONDING.value, "reason": reason,
                                    "was": was.value}))
        self._refresh(agent)
        if self._prefs:
            pref = self._prefs.get(task.id)
            if pref is not None and pref[0] == agent.id:
                self._end_preference(task, now, out, "offer_expired")
        self._back_to_queue(task, now, out)
        return out

    def wrap_up(self, agent_id: str, task_id: str, now: float) -> Outcome:
        """The work is done (a call ended): wrap-up, which ends by itself the queue's wrap-up
        time from now, or later when the agent extends it (up to MAX_WRAP_UP_EXTENSION more)."""
        agent, task = self._holder(agent_id, task_id)
        task.move(TaskState.WRAP_UP, now)
        agent.wrapping.add(task_id)
        until = now + self.queues[task.queue].wrap_up_seconds
        window = {"until": until, "limit": until + MAX_WRAP_UP_EXTENSION}
        task.attributes = {**task.attributes, WRAP_UP_ATTRIBUTE: window}
        out = Outcome()
        out.touch(task)
        out.events.append(ev.Event(ev.TASK_WRAP_UP, now, task_id, agent_id,
                                   ev.agent_actor(agent_id), dict(window)))
        return out

    def wrap_up_window(self, task_id: str) -> tuple[float, float] | None:
        """(when the task's wrap-up ends by itself, the latest it may be extended to); None when
        the task is not in wrap-up."""
        task = self.tasks.get(task_id)
        if task is None or task.state is not TaskState.WRAP_UP:
            return None
        window = task.attributes.get(WRAP_UP_ATTRIBUTE)
        if isinstance(window, dict) and _number(window.get("until")) and _number(
                window.get("limit")):
            return float(window["until"]), float(window["limit"])
        # Begun before windows were recorded: from its last change of state.
        until = (task.updated_at or task.created_at) + self.queues[task.queue].wrap_up_seconds
        return until, until + MAX_WRAP_UP_EXTENSION

    def extend_wrap_up(self, agent_id: str, task_id: str, seconds: object, now: float
                       ) -> Outcome:
        """The holder needs more time: the wrap-up ends `seconds` later (counted from now when
        its time is already up), never beyond its limit. Logged as `task.wrap_up_extended`."""
        _, task = self._holder(agent_id, task_id)
        if task.state is not TaskState.WRAP_UP:
            raise InvalidValue(f"task {task_id} is {task.state.value}: only a wrap-up can be "
                               "extended")
        if not _number(seconds) or not 0 < seconds <= MAX_WRAP_UP_EXTENSION:
            raise InvalidValue(f"a wrap-up is extended by more than 0 and at most "
                               f"{MAX_WRAP_UP_EXTENSION:g} seconds")
        was, limit = self.wrap_up_window(task_id)  # type: ignore[misc]  # a wrap-up: not None
        start = max(was, now)
        until = start + seconds
        if until > limit:
            raise InvalidValue(f"this wrap-up can be extended by {max(0.0, limit - start):.0f} s "
                               "more at most")
        task.attributes = {**task.attributes,
                           WRAP_UP_ATTRIBUTE: {"until": until, "limit": limit}}
        out = Outcome()
        out.touch(task)
        out.events.append(ev.Event(ev.TASK_WRAP_UP_EXTENDED, now, task_id, agent_id,
                                   ev.agent_actor(agent_id),
                                   {"seconds": seconds, "until": until, "was": was}))
        return out

    def complete(self, agent_id: str, task_id: str, now: float, disposition: str = "",
                 actor: str | None = None, notes: str = "") -> Outcome:
        """The agent is done; `disposition` codes the outcome, `notes` are the wrap-up notes."""
        agent, task = self.agents.get(agent_id), self.tasks.get(task_id)
        if agent is None or task is None or task_id not in agent.held:
            agent, task = self._holder(agent_id, task_id)  # raises the right error
        out = Outcome()
        data = {"disposition": disposition, "notes": notes} if notes else {
            "disposition": disposition}
        self._finish(agent, task, now, out, actor or "agent:" + agent_id, data,
                     refresh=False)
        self._serve_or_list(agent, now, out)
        return out

    def pick(self, agent_id: str, task_id: str, now: float) -> Outcome:
        """Pull mode: the agent takes a waiting task from a pull queue's list."""
        agent, task = self._agent(agent_id), self._task(task_id)
        queue = self.queues[task.queue]
        if queue.mode is not Mode.PULL:
            raise NotEligible(agent_id, task_id, f"queue {queue.name} pushes its tasks")
        if task.state is not TaskState.QUEUED:
            raise TaskTaken(agent_id, task_id, task.state.value)
        bucket = task.bucket
        if bucket is None or agent_id not in bucket.eligible:
            raise NotEligible(agent_id, task_id,
                              "not a member of the queue with the skills and the channel")
        if not agent.can_take(task.channel, self.matrix_of(agent)):
            raise NotEligible(agent_id, task_id, (
                f"you are {agent.status.value.replace('_', ' ')}: be available to pick"
                if agent.status is not Presence.AVAILABLE else "an offer is pending"
                if agent.offer_id is not None else f"no free {task.channel.value} capacity"))
        out = Outcome()
        self._unbucket(task)
        self._served(task, now)
        task.move(TaskState.ASSIGNED, now)
        task.agent_id = agent_id
        agent.held[task_id] = task.channel
        agent.idle_since = now
        out.touch(task)
        out.events.append(ev.Event(ev.TASK_ASSIGNED, now, task_id, agent_id,
                                   ev.agent_actor(agent_id), {"via": "pick"}))
        self._serve_or_list(agent, now, out)
        return out

    # ------------------------------------------------------------------ recovery

    def restore(
        self,
        queues: Iterable[Queue],
        agents: Iterable[Agent],
        open_tasks: Iterable[Task],
        declines: Iterable[tuple[str, str]],
        now: float,
    ) -> Outcome:
        """Rebuild from the database at start. Agents start offline; queued tasks go back to
        their queues in their original order; offers that were pending are over (the agent is
        not connected): their tasks go back to the head with their original age; assigned and
        wrap-up tasks stay with their agents. A waiting task's active preference (its
        attributes) holds: it is reserved for that agent again.

        In one piece; the same as `restore_setup`, then `restore_tasks` on the open tasks in
        order, in as many slices as the caller likes (the service yields to the reactor
        between slices, so that a start with millions of tasks never blocks it for long)."""
        out = self.restore_setup(queues, agents, declines, now)
        self.restore_tasks(open_tasks, now, out)
        return out

    def restore_setup(
        self,
        queues: Iterable[Queue],
        agents: Iterable[Agent],
        declines: Iterable[tuple[str, str]],
        now: float,
    ) -> Outcome:
        """The first step of a restore in slices: queues, agents (offline, holding nothing
        yet) and the declines. Returns the Outcome that `restore_tasks` adds to. Nothing but
        `restore_tasks` may use the router until every open task is restored."""
        out = Outcome()
        for q in queues:
            self.put_queue(q, now)
        for a in agents:
            a.status = Presence.OFFLINE
            a.held, a.wrapping = {}, set()
            a.offer_id = a.offer_task_id = a.offer_channel = None
            self.put_agent(a, now)
        for task_id, agent_id in declines:
            self.declined.setdefault(task_id, set()).add(agent_id)
        return out

    def restore_tasks(self, open_tasks: Iterable[Task], now: float, out: Outcome) -> None:
        """The next slice of a restore's open tasks (after `restore_setup`), in their stored
        order, their changes added to `out`. A task depends only on the setup and on itself
        (every agent is offline: nothing is offered), so slices give what one piece gives."""
        for task in open_tasks:
            task.bucket = None  # the router's own (see submit)
            self.tasks[task.id] = task
            if task.state is TaskState.OFFERED:
                out.events.append(ev.Event(ev.OFFER_EXPIRED, now, task.id, task.agent_id,
                                           data={"offer_id": task.offer_id,
                                                 "reason": "restart"}))
                task.move(TaskState.QUEUED, now)
                task.agent_id = task.offer_id = task.offer_expires_at = None
                out.touch(task)
            task.condition = self.queues[task.queue].condition_at(task)
            if task.state is TaskState.QUEUED:
                if task.may_hold(NOT_BEFORE) and (until := held_until(task.attributes, now)):
                    self._parked[task.id] = until  # a callback waiting for its time
                    continue
                b = self._bucket(task)
                if task.may_hold("preferred_agent"):  # packed attributes stay packed
                    self._note_preference(task, now)
                if not (task.id in self._prefs and b.push
                        and self._place_sticky(task, b, now, out)):
                    self._enqueue(task, b)
            elif task.agent_id in self.agents:
                agent = self.agents[task.agent_id]
                agent.held[task.id] = task.channel
                if task.state is TaskState.WRAP_UP:
                    agent.wrapping.add(task.id)

    # ------------------------------------------------------------------ reading

    def waiting(self, queue: str) -> Iterator[Task]:
        """The queue's waiting tasks (unordered), reserved ones included. Reads only;
        O(queue depth + tasks reserved for an agent)."""
        for b in self._queue_buckets.get(queue, ()):
            for task_id in b.task_live:
                yield self.tasks[task_id]
        for task_id in self._reserved:
            task = self.tasks[task_id]
            if task.queue == queue:
                yield task
        for task_id in self._parked:
            task = self.tasks[task_id]
            if task.queue == queue:
                yield task

    def pull_list(self, agent_id: str, limit: int) -> tuple[list[Task], int]:
        """The waiting tasks of the agent's pull queues that they could pick: they meet the
        requirement, the channel is on and reachable, a slot of its capacity is free (their
        status aside: picking needs `available`). Best first, in the order the router serves
        (priority, due time, arrival), at most `limit`; and how many there are in all. Reads
        only; O(tasks waiting in the agent's pull buckets)."""
        agent = self._agent(agent_id)
        channels = self._pickable_channels(agent)
        total = 0
        entries: list[tuple] = []
        for b in self._agent_buckets.get(agent_id, ()):
            if b.push or b.channel not in channels or not b.task_live:
                continue
            live = b.task_live
            total += len(live)
            entries.extend(e for e in b.tasks if live.get(e[4]) == e[3])
        best = heapq.nsmallest(limit, entries) if limit > 0 else []
        return [self.tasks[e[4]] for e in best], total

    def _pickable_channels(self, agent: Agent) -> set[Channel]:
        """The channels the agent could hold one more task of (capacity, interruption matrix,
        per-channel presence, devices), whatever their status and pending offer; none when
        disabled."""
        if agent.disabled:
            return set()
        held = set(agent.held.values()) | agent.engaged
        blocked = agent.paused | agent.unreachable | agent.engaged
        out = set()
        for ch in agent.channels:
            n = sum(1 for c in agent.held.values() if c is ch)
            if ch not in blocked and n < agent.capacity.get(ch, 0) and self.matrix_of(
                    agent).permits(
                    held, ch):
                out.add(ch)
        return out

    def available_count(self, queue: str, channel: Channel) -> int:
        """Members who could be offered a task of `channel` now (status, capacity, interruption
        matrix; skills aside), whether or not such a task was seen yet. Reads only; O(members)."""
        agents = self.agents
        return sum(1 for a in self._members.get(queue, ())
                   if agents[a].can_take(channel, self.matrix_of(agents[a])))

    def set_reserve(self, queue: str, on: bool, now: float) -> Outcome:
        """The service's word that the queue's calls are at risk (on) or no longer (off). While
        on, and the queue keeps a reserve (`Queue.reserve` = N), e-mail is offered to one of
        its members who can take calls only if at least N others stay free for its calls;
        when off, free members are served again. Returns what that served."""
        q = self._queue(queue)
        out = Outcome()
        if on and q.reserve > 0:
            self.reserving.add(queue)
        elif queue in self.reserving:
            self.reserving.discard(queue)
            self._drain(queue, now, out)
        return out

    def _kept(self, agent: Agent) -> bool:
        """Whether the agent is kept free for calls now: a member, able to take calls, of a
        queue keeping a reserve whose other free call-takers are fewer than its reserve.
        O(queues reserving x their call buckets); only asked while some queue reserves."""
        if Channel.PHONE not in agent.channels or not agent.capacity.get(Channel.PHONE):
            return False
        aid = agent.id
        for name in self.reserving:
            if aid not in self._members.get(name, ()):
                continue
            others = max((len(b.agent_live) - (aid in b.agent_live)
                          for b in self._queue_buckets.get(name, ())
                          if b.channel is Channel.PHONE), default=0)
            if others < self.queues[name].reserve:
                return True
        return False

    def matrix_of(self, agent: Agent) -> InterruptionMatrix:
        """The interruption matrix that applies to the agent: their own, or the centre's."""
        return agent.interruptions or self.matrix

    def head_arrival(self, queue: str, channel: Channel) -> float | None:
        """When the task the router would serve first in the queue's channel arrived (None:
        nothing waits). Reads only; O(the queue's buckets)."""
        heads = [e for b in self._queue_buckets.get(queue, ())
                 if b.channel is channel and (e := b.head_task()) is not None]
        return min(heads)[2] if heads else None

    def members(self, queue: str) -> set[str]:
        return set(self._members.get(queue, ()))

    def order(self, task: Task) -> tuple[int, float, float]:
        """Where a waiting task stands in the order the router serves (lower first): its own
        priority plus its queue's, its due time, its arrival. Reads only; O(1)."""
        return _order(task, self.queues[task.queue])

    # ------------------------------------------------------------------ internals

    def _queue(self, name: str) -> Queue:
        try:
            return self.queues[name]
        except KeyError:
            raise UnknownQueue(name) from None

    def _agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise UnknownAgent(agent_id) from None

    def _task(self, task_id: str) -> Task:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise UnknownTask(task_id) from None

    def pending_offer(self, agent_id: str, task_id: str) -> Offer | None:
        """The agent's pending offer when it is of `task_id`, else None (a phone that answers
        accepts only the offer of its own call)."""
        agent = self.agents.get(agent_id)
        offer = self.offers.get(agent.offer_id) if agent is not None and agent.offer_id else None
        return offer if offer is not None and offer.task_id == task_id else None

    def _own_offer(self, agent_id: str, offer_id: str) -> Offer:
        self._agent(agent_id)
        offer = self.offers.get(offer_id)
        if offer is None:
            raise OfferNotCurrent(offer_id)
        if offer.agent_id != agent_id:
            raise Forbidden(agent_id, f"offer {offer_id}")
        return offer

    def _holder(self, agent_id: str, task_id: str) -> tuple[Agent, Task]:
        agent, task = self._agent(agent_id), self._task(task_id)
        if task_id not in agent.held:
            raise Forbidden(agent_id, f"task {task_id}")
        return agent, task

    def _bucket(self, task: Task) -> Bucket:
        return self._bucket_for(task.queue, task.channel,
                                task.required_skills, task.condition)  # type: ignore[arg-type]

    def _bucket_for(self, queue: str, channel: Channel, req: dict[str, int],
                    cond: Condition | None = None) -> Bucket:
        mine = self._queue_buckets.get(queue, ())
        if len(mine) <= FEW_BUCKETS:  # the usual case: a look at each beats building the key
            for one in mine:
                if one.channel is channel and one.requirement == req and one.condition == cond:
                    return one
        # The key: the requirement's items in order (one item needs no sorting), the condition.
        key = (queue, channel, tuple(sorted(req.items())) if len(req) > 1 else tuple(req.items()),
               cond)
        b = self._buckets.get(key)
        if b is None:
            b = Bucket(self.queues[queue], channel, dict(req), cond, key)
            self._buckets[key] = b
            self._queue_buckets[queue].append(b)
            for agent_id in sorted(self._members[queue]):  # ties: by id, not hash order
                agent = self.agents[agent_id]
                if self._eligible(agent, channel, req, cond):
                    b.admit(agent)
                    self._agent_buckets[agent_id].append(b)
                    if channel in self._open_channels(agent):
                        self._push_agent(b, agent)
        return b

    @staticmethod
    def _eligible(agent: Agent, channel: Channel, req: dict[str, int],
                  cond: Condition | None = None) -> bool:
        """A member who meets the requirement (skill levels and expression) and handles the
        channel (whatever their status): the agents of a bucket, and who could ever take its
        tasks."""
        return (channel in agent.channels and agent.capacity.get(channel, 0) > 0
                and meets(agent.skills, req)
                and (cond is None or cond.meets(agent.skills, agent.attributes)))

    def _open_channels(self, agent: Agent) -> tuple[Channel, ...]:
        """The channels `agent.can_take` right now, computed in one pass over what they hold."""
        if agent.status is not Presence.AVAILABLE or agent.offer_id is not None or agent.disabled:
            return ()
        handled = self._handled.get(agent.id)
        if (handled is None or handled.channels is not agent.channels
                or handled.capacity is not agent.capacity):
            handled = self._handle(agent)
        held = agent.held
        if agent.paused or agent.unreachable:
            blocked = agent.paused | agent.unreachable
            return self._open_holding(tuple(ch for ch in handled.open if ch not in blocked),
                                      agent)
        if agent.engaged:
            return self._open_holding(handled.open, agent)
        if not held:
            return handled.open
        if handled.matrix is (agent.interruptions or self.matrix):
            # The usual case, cached: every task held is of one channel.
            n = len(held)
            if n == 1:
                (one,) = held.values()
            else:
                kinds = [*held.values()]
                one = kinds[0]
                if kinds.count(one) != n:
                    return self._open_holding(handled.open, agent)
            key = (one, n)
            can = handled.holding.get(key)
            if can is None:
                can = handled.holding[key] = self._open_holding(handled.open, agent)
            return can
        return self._open_holding(handled.open, agent)

    def _open_holding(self, chans: tuple[Channel, ...], agent: Agent) -> tuple[Channel, ...]:
        """Of `chans` (channels the agent handles, not paused nor unreachable), those they can
        take given what they hold and the channels they are engaged on."""
        held = agent.held
        if not held and not agent.engaged:
            return chans
        cap = agent.capacity
        if len(held) == 1 and not agent.engaged:  # one task held
            (one,) = held.values()
            lets_in = (agent.interruptions or self.matrix).allows.get(one, _NO_CHANNELS)
            return tuple(ch for ch in chans if ch in lets_in and (ch is not one or cap[ch] > 1))
        counts: dict[Channel, int] = {}
        for ch in held.values():
            counts[ch] = counts.get(ch, 0) + 1
        for ch in agent.engaged:  # busy outside our routing: held, and full
            counts[ch] = max(counts.get(ch, 0), cap.get(ch, 0), 1)
        allows = (agent.interruptions or self.matrix).allows
        allowed: frozenset[Channel] | None = None
        for ch in counts:  # what every channel held lets in (the interruption matrix)
            ok = allows.get(ch, _NO_CHANNELS)
            allowed = ok if allowed is None else allowed & ok
        if not allowed:
            return ()
        return tuple(ch for ch in chans if ch in allowed and counts.get(ch, 0) < cap[ch])

    def _handle(self, agent: Agent) -> _Handled:
        """Cache the channels the agent handles with some capacity (what `_open_channels`
        starts from), valid while their `channels` and `capacity` are the same objects (a
        configuration change replaces both)."""
        handled = _Handled(agent.channels, agent.capacity, agent.interruptions or self.matrix)
        self._handled[agent.id] = handled
        return handled

    def _push_agent(self, b: Bucket, agent: Agent) -> None:
        """Make the agent's entry in the bucket's agent heap live (a new entry only when their
        key changed). Key: longest idle, or highest skill then longest idle."""
        aid = agent.id
        if b.by_skill:
            k1, k2 = b.levels[aid], agent.idle_since
        else:
            k1, k2 = agent.idle_since, 0.0
        live = b.agent_live
        cur = live.get(aid)
        if cur is not None and cur[0] == k1 and cur[1] == k2:
            return
        self._listed.add(aid)
        b.list_agent((k1, k2, next(self._seq), aid))

    def _refresh(self, agent: Agent, can: tuple[Channel, ...] | None = None) -> None:
        """Put the agent in (or take them out of) the agent heaps of their buckets, per channel,
        according to what they can take now (`can`, when the caller has it). `_push_agent`,
        inline: an agent in many queues is in many buckets, and this runs at each change."""
        aid = agent.id
        if can is None:
            can = self._open_channels(agent)
        if not can:
            self._unlist(aid)
            return
        idle, seq, pushed = agent.idle_since, self._seq, False
        # Any: one object, compiled too (mypyc would keep a tuple type unboxed and box it anew
        # at each use), as `live` and the run or the heap must hold the same entry.
        entry: Any
        for b in self._agent_buckets.get(aid, ()):
            live = b.agent_live
            if b.channel not in can:
                if live:
                    live.pop(aid, None)
                continue
            if b.by_skill:
                k1, k2 = b.levels[aid], idle
            else:
                k1, k2 = idle, 0.0
            cur = live.get(aid)
            if cur is not None and cur[0] == k1 and cur[1] == k2:
                continue
            entry = (k1, k2, next(seq), aid)
            live[aid] = entry
            pushed = True
            run = b.run  # Bucket.list_agent, inline
            if not run or entry > run[-1]:
                run.append(entry)
            else:
                heapq.heappush(b.agents, entry)
            listed = len(run) + len(b.agents)
            if listed > COMPACT_MIN and listed > COMPACT_FACTOR * len(live):
                b.compact()
        if pushed:
            self._listed.add(aid)

    def _unlist(self, agent_id: str) -> None:
        """Take the agent out of every agent heap of their buckets."""
        if agent_id in self._listed:
            self._listed.discard(agent_id)
            for b in self._agent_buckets.get(agent_id, ()):
                b.agent_live.pop(agent_id, None)

    def _rebuild(self, b: Bucket) -> None:
        b.agent_live.clear()
        b.agents.clear()
        b.run.clear()
        for agent_id in b.eligible:
            agent = self.agents[agent_id]
            if b.channel in self._open_channels(agent):
                self._push_agent(b, agent)
        live = [self.tasks[t] for t in b.task_live]
        b.task_live.clear()
        b.head = None
        b.tasks.clear()
        for task in live:
            self._enqueue(task, b)

    def _task_entry(self, task: Task, queue: Queue) -> tuple:
        return (*_order(task, queue), next(self._seq), task.id)

    def _enqueue(self, task: Task, b: Bucket) -> None:
        task_id, seq = task.id, next(self._seq)
        queue = self.queues[task.queue]
        # _task_entry, inline: _order's key, then the sequence and the id
        entry: Any = (-(task.priority + queue.priority), queue.due(task), task.created_at, seq,
                      task_id)  # Any: one object, compiled too (see _refresh)
        live = b.task_live
        live[task_id] = seq
        task.bucket = b
        heap = b.tasks
        heapq.heappush(heap, entry)
        head = b.head
        if head is not None and entry < head:
            b.head = entry
        if len(heap) > COMPACT_MIN and len(heap) > COMPACT_FACTOR * len(live):
            b.compact()

    def _unbucket(self, task: Task) -> None:
        b = task.bucket
        if b is not None:
            task.bucket = None
            b.task_live.pop(task.id, None)
            if b.head is not None and b.head[4] == task.id:
                b.head = None
        elif self._reserved and task.id in self._reserved:
            self._unreserve(task.id)

    def _catch_up_steps(self, task: Task, now: float, out: Outcome) -> bool:
        """Apply every escalation step whose time has come; then skip at once every step that
        no agent could ever take. Returns whether the requirement changed."""
        queue = self.queues[task.queue]
        steps = queue.steps
        n = len(steps)
        if task.step == n:
            return False  # no step left (the common case: a queue without steps)
        # min(): the queue may have been given fewer steps since the task took its last one.
        step, skipped = min(task.step, n), []
        while step < n and task.created_at + steps[step].after_seconds <= now:
            step += 1
        if step == task.step:
            req: dict[str, int] = task.required_skills  # type: ignore[assignment]  # intake's
            cond = task.condition
        else:
            req, cond = queue.requirement_at(task.base_skills, step), queue.condition_at(task, step)
        while step < n and not self._could_match(task, req, cond):
            skipped.append(step)
            step += 1
            req, cond = queue.requirement_at(task.base_skills, step), queue.condition_at(task, step)
        if step == task.step:
            return False
        task.step, task.required_skills, task.step_started_at = step, req, now
        task.condition = cond
        task.updated_at = now
        out.touch(task)
        data = {"step": step, "requirement": req, "skipped_unmatchable": skipped}
        if cond is not None or queue.expression:
            data["condition"] = cond.text if cond is not None else ""
        out.events.append(ev.Event(ev.TASK_ESCALATED, now, task.id, data=data))
        return True

    def _could_match(self, task: Task, req: dict[str, int], cond: Condition | None) -> bool:
        """Whether any member of the queue (whatever their status) meets `req` and `cond`."""
        return bool(self._bucket_for(task.queue, task.channel, req, cond).eligible)

    def _place(self, task: Task, now: float, out: Outcome) -> None:
        """Offer a queued task to the best available eligible agent, or leave it waiting."""
        if self._parked and task.id in self._parked:
            out.tasks[task.id] = task  # held aside (`park`): it waits for its time
            return
        b = self._bucket_for(task.queue, task.channel,
                             task.required_skills, task.condition)  # type: ignore[arg-type]
        out.tasks[task.id] = task
        if self._prefs and b.push and task.id in self._prefs and self._place_sticky(
                task, b, now, out):
            return
        if b.push and b.agent_live:
            agent_id, why = self._best_agent(b, task)
            if agent_id is not None:
                self._offer(task, self.agents[agent_id], now, out, why)
                return
        self._enqueue(task, b)

    def _best_agent(self, b: Bucket, task: Task) -> tuple[str | None, dict]:
        declined = self.declined.get(task.id)
        skipped: dict[str, str] = {}
        # A reserve for calls is being kept: e-mail skips the agents it holds (`_kept`).
        reserve = bool(self.reserving) and task.channel is Channel.EMAIL
        if not declined and not reserve:  # the usual case: the lesser of the two live fronts
            live, run, heap = b.agent_live, b.run, b.agents
            while run and live.get(run[0][3]) is not run[0]:
                run.popleft()
            while heap and live.get(heap[0][3]) is not heap[0]:
                heapq.heappop(heap)
            if run and (not heap or run[0] < heap[0]):
                found = run[0][3]
            elif heap:
                found = heap[0][3]
            else:
                return None, {}
        else:
            found = self._first_not_skipped(b, declined or (), reserve, skipped)
            if found is None:
                return None, {}
        why: dict[str, Any] = {
            "rule": b.rule,
            "requirement": b.requirement,
            "eligible": len(b.eligible),
            "available": len(b.agent_live),
            "skipped": skipped,
        }
        self._explain(b, task.id, found, why, weighed=True)
        if reserve and skipped:
            _name_kept(why)
        if declined:
            _skip_declined(why)
        return found, why

    def _first_not_skipped(self, b: Bucket, declined: Iterable[str], reserve: bool,
                           skipped: dict[str, str]) -> str | None:
        """The bucket's best free agent who did not decline the task and, when `reserve`,
        is not kept free for calls; the agents passed over are named in `skipped`."""
        taken, found = [], None
        for entry in b.best_agents():
            taken.append(entry)
            if entry[3] in declined:
                if len(skipped) < MAX_EXPLAINED:
                    skipped[entry[3]] = "declined"
                continue
            if reserve and self._kept(self.agents[entry[3]]):
                if len(skipped) < MAX_EXPLAINED:
                    skipped[entry[3]] = "kept_for_calls"
                continue
            found = entry[3]
            break
        b.put_back(taken)
        return found

    def _best_task_in(self, b: Bucket, agent_id: str, skipped: dict) -> tuple | None:
        """The head of the bucket's waiting tasks that the agent did not decline; the declined
        ones passed over are named in `skipped`."""
        entry = b.head_task()
        if entry is None:
            return None
        declined = self.declined
        if agent_id not in declined.get(entry[4], ()):
            return entry
        # The agent declined the head: look further, then put back what was looked at.
        heap, live, stash, found = b.tasks, b.task_live, [], None
        while heap:
            e = heapq.heappop(heap)
            if live.get(e[4]) != e[3]:
                continue
            stash.append(e)
            if agent_id not in declined.get(e[4], ()):
                found = e
                break
        for e in stash:
            heapq.heappush(heap, e)
            if e is not found and len(skipped) < MAX_EXPLAINED:
                skipped[e[4]] = e
        return found

    def _serve_or_list(self, agent: Agent, now: float, out: Outcome) -> None:
        """`_refresh` then `_serve`, in the cheaper order: when the agent gets an offer they
        can take nothing more, so listing them in their buckets' agent heaps first would be
        undone at once."""
        can = self._open_channels(agent)
        if not (can and self._serve(agent, now, out, can)):
            self._refresh(agent, can)

    def _serve(  # noqa: C901 - one scan over the agent's buckets, each skip inline
        self, agent: Agent, now: float, out: Outcome,
        can: tuple[Channel, ...] | None = None,
    ) -> bool:
        """The agent may be able to take work: offer them the best waiting task across every
        bucket they are eligible for (one global order). Returns whether they got an offer.
        `can`: the agent's open channels, when the caller has them."""
        if can is None:
            can = self._open_channels(agent)
        if not can:
            return False
        if self.reserving and Channel.EMAIL in can and self._kept(agent):
            can = tuple(c for c in can if c is not Channel.EMAIL)  # kept free for calls
            if not can:
                return False
        if self._sticky and agent.id in self._sticky and self._serve_sticky(agent, can, now, out):
            return True
        aid, declined = agent.id, self.declined
        best: tuple | None = None
        best_b: Bucket | None = None
        looked = 0
        skipped: dict = {}
        for b in self._agent_buckets.get(aid, ()):
            if not b.push or b.channel not in can:
                continue
            entry = b.head
            if entry is None:
                if not b.task_live:
                    continue
                entry = b.head_task()
                if entry is None:
                    continue
            looked += 1
            if declined and aid in declined.get(entry[4], ()):
                entry = self._best_task_in(b, aid, skipped)
                if entry is None:
                    continue
            if best is None or entry < best:
                best, best_b = entry, b
        if best is None or best_b is None:
            return False
        task = self.tasks[best[4]]
        self._unbucket(task)
        if skipped:
            skipped = {t: "declined" for t, e in skipped.items() if e < best}
        # The agent is available for this bucket even when not listed in it yet.
        available = len(best_b.agent_live) + (aid not in best_b.agent_live)
        why = {"rule": "best_task_for_agent", "requirement": best_b.requirement,
               "eligible": len(best_b.eligible), "available": available,
               "skipped": skipped, "buckets_looked_at": looked,
               "order": "priority, due time, arrival"}
        self._explain(best_b, task.id, aid, why)
        self._offer(task, agent, now, out, why)
        return True

    def _offer(self, task: Task, agent: Agent, now: float, out: Outcome, why: dict) -> None:
        task_id, aid, channel, offer_id = task.id, agent.id, task.channel, self.new_offer_id()
        expires = now + self.queues[task.queue].offer_timeout.get(channel, 60.0)
        offer = Offer(offer_id, task_id, aid, channel, task.queue, now, expires)
        task.move(TaskState.OFFERED, now)
        task.agent_id, task.offer_id, task.offer_expires_at = aid, offer_id, expires
        agent.offer_id, agent.offer_task_id, agent.offer_channel = offer_id, task_id, channel
        self.offers[offer_id] = offer
        if aid in self._listed:  # what _refresh does: with an offer pending, they take nothing
            self._unlist(aid)
        if "offered" not in why:  # a named agent (transfer, supervisor): nobody else weighed
            why["offered"], why["passed"] = aid, []
            why["counts"] = {"members": len(self._members.get(task.queue, ()))}
        out.offers.append(offer)
        out.tasks[task_id] = task
        out.events.append(ev.Event(ev.TASK_OFFERED, now, task_id, aid, ev.SYSTEM,
                                   {"offer_id": offer_id, "expires_at": expires,
                                    "step": task.step, "explanation": why}))

    def _end_offer(self, offer: Offer, agent: Agent) -> None:
        del self.offers[offer.id]
        agent.offer_id = agent.offer_task_id = agent.offer_channel = None
        task = self.tasks[offer.task_id]
        task.offer_id = task.offer_expires_at = None

    def _back_to_queue(self, task: Task, now: float, out: Outcome) -> None:
        task.move(TaskState.QUEUED, now)
        task.agent_id = None
        self._catch_up_steps(task, now, out)
        self._place(task, now, out)

    def _withdraw(self, offer: Offer, now: float, out: Outcome, reason: str, actor: str,
                  requeue: bool = True) -> None:
        agent, task = self.agents[offer.agent_id], self.tasks[offer.task_id]
        self._end_offer(offer, agent)
        out.ended.append(offer)
        out.events.append(ev.Event(ev.OFFER_WITHDRAWN, now, task.id, agent.id, actor,
                                   {"offer_id": offer.id, "reason": reason}))
        self._refresh(agent)
        if requeue:
            self._back_to_queue(task, now, out)
        else:
            task.agent_id = None

    def _release(self, agent: Agent, task_id: str, now: float, refresh: bool = True) -> None:
        agent.held.pop(task_id, None)
        if agent.wrapping:
            agent.wrapping.discard(task_id)
        agent.idle_since = now
        if refresh:
            self._refresh(agent)

    def _finish(self, agent: Agent, task: Task, now: float, out: Outcome, actor: str,
                data: dict, refresh: bool = True) -> None:
        task.move(TaskState.COMPLETED, now)
        self._release(agent, task.id, now, refresh)
        # _forget, inline (the hot path): a held task waits in no bucket
        task_id = task.id
        self.tasks.pop(task_id, None)
        if self.declined:
            self.declined.pop(task_id, None)
        if self._reserved or task.bucket is not None:
            self._unbucket(task)
        if self._prefs:
            self._prefs.pop(task_id, None)
        if self._expired:
            self._expired.pop(task_id, None)
        out.tasks[task_id] = task
        out.events.append(ev.Event(ev.TASK_COMPLETED, now, task_id, agent.id, actor, data))

    def _forget(self, task: Task) -> None:
        self.tasks.pop(task.id, None)
        self.declined.pop(task.id, None)
        self._unbucket(task)
        if self._parked:
            self._parked.pop(task.id, None)
        if self._prefs:
            self._prefs.pop(task.id, None)
        if self._expired:
            self._expired.pop(task.id, None)

    def _close(self, task_id: str, to: TaskState, now: float, actor: str, data: dict) -> Outcome:
        task = self._task(task_id)
        out = Outcome()
        if to not in {TaskState.CANCELLED, TaskState.ABANDONED}:
            raise InvalidValue(f"cannot close a task as {to.value}")
        if to not in TRANSITIONS[task.state]:
            raise IllegalTransition(task_id, task.state.value, to.value)
        freed: Agent | None = None
        if task.state is TaskState.OFFERED:
            offer = self.offers[task.offer_id]  # type: ignore[index]  # offered: it has one
            freed = self.agents[offer.agent_id]
            self._withdraw(offer, now, out, to.value, actor, requeue=False)
        elif task.state is TaskState.ASSIGNED:
            freed = self.agents[task.agent_id]  # type: ignore[index]  # assigned: it has one
            self._release(freed, task.id, now)
        task.move(to, now)
        self._forget(task)
        out.touch(task)
        kind = ev.TASK_CANCELLED if to is TaskState.CANCELLED else ev.TASK_ABANDONED
        out.events.append(ev.Event(kind, now, task.id, freed.id if freed else None, actor, data))
        if freed is not None:
            self._serve(freed, now, out)
        return out

    # ------------------------------------------------------------------ stickiness

    def _note_preference(self, task: Task, now: float) -> None:
        """Record the task's preference for one agent, when its attributes hold one that is
        still to come (anything malformed is no preference)."""
        attrs = task.attributes
        agent_id, until = attrs.get("preferred_agent"), attrs.get("preferred_until")
        if (isinstance(agent_id, str) and agent_id and isinstance(until, int | float)
                and not isinstance(until, bool) and until > now):
            self._prefs[task.id] = (agent_id, float(until))

    def _place_sticky(self, task: Task, b: Bucket, now: float, out: Outcome) -> bool:
        """Place a task with a preference in push bucket `b`: offer it to the preferred agent,
        or reserve it for them; or end the preference (returns False: place it normally)."""
        aid, until = self._prefs[task.id]
        agent = self.agents.get(aid)
        if until <= now:
            reason = "timeout"
        elif agent is None:
            reason = "unknown_agent"
        elif aid not in b.eligible:
            reason = "not_eligible"
        elif aid in self.declined.get(task.id, ()):
            reason = "declined"
        else:
            if b.channel in self._open_channels(agent):
                self._offer(task, agent, now, out, self._sticky_why(b, aid, until, False,
                                                                    task.id))
            else:
                self._reserve(task, aid)
            return True
        self._end_preference(task, now, out, reason)
        return False

    def _sticky_why(self, b: Bucket, aid: str, until: float, waited: bool, task_id: str
                    ) -> dict:
        # The agent is available for this bucket even when not listed in it yet.
        why = {"rule": "sticky", "requirement": b.requirement, "eligible": len(b.eligible),
               "available": len(b.agent_live) + (aid not in b.agent_live), "skipped": {},
               "preferred_agent": aid, "preferred_until": until, "waited_for_agent": waited}
        self._explain(b, task_id, aid, why)
        return why

    def _reserve(self, task: Task, aid: str) -> None:
        entry = self._task_entry(task, self.queues[task.queue])
        self._reserved[task.id] = (aid, entry)
        self._sticky.setdefault(aid, []).append(entry)

    def _unreserve(self, task_id: str) -> None:
        aid, entry = self._reserved.pop(task_id)
        mine = self._sticky[aid]
        mine.remove(entry)
        if not mine:
            del self._sticky[aid]

    def _serve_sticky(self, agent: Agent, can: tuple[Channel, ...], now: float,
                      out: Outcome) -> bool:
        """Offer the agent the first (usual order) of the tasks reserved for them that they can
        take now. Returns whether they got an offer."""
        tasks, best = self.tasks, None
        for entry in self._sticky[agent.id]:
            if tasks[entry[4]].channel in can and (best is None or entry < best):
                best = entry
        if best is None:
            return False
        task = tasks[best[4]]
        self._unreserve(task.id)
        until = self._prefs[task.id][1]
        self._offer(task, agent, now, out, self._sticky_why(self._bucket(task), agent.id, until,
                                                            True, task.id))
        return True

    def _check_free(self, target: Agent, task: Task) -> None:
        """A task sent to a named agent needs them free for its channel now."""
        if not target.can_take(task.channel, self.matrix_of(target)):
            raise NotEligible(target.id, task.id,
                              f"{target.presence(self.matrix_of(target)).value}, no free "
                              f"{task.channel.value} capacity now")

    @staticmethod
    def _rehome(task: Task, old_queue: Queue, new_queue: Queue, now: float) -> None:
        """The task belongs to another queue: that queue's requirement plus the task's own
        extra skills, escalation from its first step; its age is kept."""
        extra = {k: v for k, v in task.base_skills.items() if k not in old_queue.requirement}
        task.queue, task.step = new_queue.name, 0
        task.base_skills = {**new_queue.requirement, **extra}
        task.required_skills = new_queue.requirement_at(task.base_skills, 0)
        task.condition = new_queue.condition_at(task)
        task.step_started_at = now

    def _served(self, task: Task, now: float) -> None:
        """An assigned task has served its preference: forgotten, and marked over in its
        attributes (written with the task), so a requeue after a restart does not bring it
        back."""
        if self._prefs:
            self._prefs.pop(task.id, None)
        until = task.attributes.get("preferred_until")
        if (isinstance(until, int | float) and not isinstance(until, bool) and until > now
                and task.attributes.get("preferred_agent")):
            task.attributes = {**task.attributes, "preferred_until": now}

    def _end_preference(self, task: Task, now: float, out: Outcome, reason: str) -> None:
        """The task's preference is over: logged, and kept over in its attributes (a restart
        does not bring it back)."""
        aid, until = self._prefs.pop(task.id)
        if until > now:
            task.attributes = {**task.attributes, "preferred_until": now}
        out.touch(task)
        out.events.append(ev.Event(ev.TASK_CHANGED, now, task.id, data={
            "preference": "ended", "reason": reason, "preferred_agent": aid,
            "preferred_until": until,
            "requirement": dict(task.required_skills)}))  # type: ignore[arg-type]

    def _release_reserved(self, agent: Agent, now: float, out: Outcome) -> None:
        """After a change of the agent's configuration: the tasks reserved for them that they
        can no longer take are placed normally."""
        for entry in list(self._sticky.get(agent.id, ())):
            task = self.tasks[entry[4]]
            if agent.id not in self._bucket(task).eligible:
                self._unreserve(task.id)
                self._end_preference(task, now, out, "not_eligible")
                self._place(task, now, out)

    def _rekey_reserved(self, queue: Queue) -> None:
        """After a change of the queue's configuration: its reserved tasks take their new place
        in the usual order, or go to the queue's list when it now pulls."""
        for task_id, (aid, _) in list(self._reserved.items()):
            task = self.tasks[task_id]
            if task.queue != queue.name:
                continue
            self._unreserve(task_id)
            if queue.mode is Mode.PUSH:
                self._reserve(task, aid)
            else:
                self._enqueue(task, self._bucket(task))

    def _drain(self, queue: str, now: float, out: Outcome) -> None:
        """After a queue change: let every available member take what they now can."""
        for agent_id in sorted(self._members.get(queue, ())):
            self._serve(self.agents[agent_id], now, out)

    # ------------------------------------------------------------------ supervision

    def set_priority(self, task_id: str, priority: object, now: float, actor: str) -> Outcome:
        """A supervisor changes an open task's priority (logged as `task.changed`). A waiting
        task takes its new place in the order at once, and is offered when someone can take
        it now; an offered or held task stays where it is (the priority counts when it waits
        again)."""
        task = self._task(task_id)
        if (isinstance(priority, bool) or not isinstance(priority, int)
                or not MIN_PRIORITY <= priority <= MAX_PRIORITY):
            raise InvalidValue(f"priority must be an integer {MIN_PRIORITY}-{MAX_PRIORITY}")
        out = Outcome()
        was = task.priority
        if priority == was:
            return out
        task.priority = priority
        out.touch(task)
        out.events.append(ev.Event(ev.TASK_CHANGED, now, task.id, task.agent_id, actor,
                                   {"priority": priority, "was": was}))
        if task.state is TaskState.QUEUED:
            self._unbucket(task)
            self._place(task, now, out)
        return out

    def redirect(self, task_id: str, now: float, actor: str, queue: str | None = None,
                 agent_id: str | None = None) -> Outcome:
        """A supervisor sends an open task elsewhere: to another queue (routed there afresh,
        original age kept, the new queue's requirement plus the task's own extra skills) or to
        a named agent (offered to them now; they must be able to take its channel, skills are
        the supervisor's call). A waiting task leaves its place and any preference for one
        agent; an offered one has its offer withdrawn (not a decline of that agent); an
        assigned one is transferred (`transfer`). Logged as `task.transferred`."""
        task = self._task(task_id)
        if task.state is TaskState.ASSIGNED:
            return self.transfer(task_id, now, actor, queue, agent_id)
        if (queue is None) == (agent_id is None):
            raise InvalidValue("redirect to exactly one of a queue or an agent")
        if task.state not in (TaskState.QUEUED, TaskState.OFFERED):
            raise IllegalTransition(task_id, task.state.value, TaskState.QUEUED.value)
        new_queue = self._queue(queue) if queue is not None else None
        target: Agent | None = None
        if agent_id is not None:
            target = self._agent(agent_id)
            if target.offer_task_id == task.id:
                raise InvalidValue("the task is already offered to that agent")
            self._check_free(target, task)
        out = Outcome()
        old_queue = self.queues[task.queue]
        data: dict = {"from_agent": None, "from_queue": old_queue.name}
        freed: Agent | None = None
        if task.state is TaskState.OFFERED:
            offer = self.offers[task.offer_id]  # type: ignore[index]  # offered: it has one
            freed = self.agents[offer.agent_id]
            data["offered_to"] = freed.id
            self._withdraw(offer, now, out, "redirected", actor, requeue=False)
            task.move(TaskState.QUEUED, now)
        else:
            self._unbucket(task)
        if self._prefs and task.id in self._prefs:
            self._end_preference(task, now, out, "redirected")
        if new_queue is not None:
            if new_queue is not old_queue:
                self._rehome(task, old_queue, new_queue, now)
            data["to_queue"] = new_queue.name
        else:
            data["to_agent"] = agent_id
        out.events.append(ev.Event(ev.TASK_TRANSFERRED, now, task.id, None, actor, data))
        if target is not None:
            self._offer(task, target, now, out, {
                "rule": "supervisor", "requirement": task.required_skills, "eligible": 1,
                "available": 1, "skipped": {}, "by": actor})
        else:
            self._catch_up_steps(task, now, out)
            self._place(task, now, out)
        out.touch(task)
        if freed is not None:
            self._serve(freed, now, out)
        return out

    def take_back(self, task_id: str, now: float, actor: str,
                  reason: str = "supervisor") -> Outcome:
        """A supervisor takes an assigned task back from its agent: it waits in its queue
        again (original age kept; logged as `task.requeued`) and is never offered back to that
        agent (recorded as their decline)."""
        task = self._task(task_id)
        if task.state is not TaskState.ASSIGNED:
            raise IllegalTransition(task_id, task.state.value, TaskState.QUEUED.value)
        holder: str = task.agent_id  # type: ignore[assignment]  # assigned: it has an agent
        self.declined.setdefault(task_id, set()).add(holder)
        out = self.requeue(task_id, now, reason, actor)
        out.declines.append((task_id, holder))
        return out

    # ------------------------------------------------------------------ explanations

    def _explain(self, b: Bucket, task_id: str, chosen: str, why: dict,
                 weighed: bool = False) -> None:
        """Add to a decision's explanation `why` (the rule's keys already in it) the agent
        offered, the members of bucket `b`'s queue passed over (at most MAX_EXPLAINED, each
        with its reason) and the counts that cover the rest (module docstring). Those who
        declined the task or let an offer of it expire come first; then, when the other members
        were `weighed` (a task looking for an agent), those not available now and those not
        eligible. Cost: O(MAX_EXPLAINED + EXPLAIN_LOOK) whatever the number of members."""
        live, eligible = b.agent_live, b.eligible
        members = self._members.get(b.queue, ())
        declined = self.declined.get(task_id)
        expired = self._expired.get(task_id) if self._expired else None
        passed: list[dict] = []
        named_live = named_away = named_out = 0  # named: available, not available, not eligible
        if declined or expired:
            named_live, named_away = self._name_gone(b, chosen, declined, expired, passed)
        # The chosen agent is available for this bucket even when not listed in it yet.
        available = len(live) + (chosen not in live)
        away = len(eligible) - available
        outside = len(members) - len(eligible)
        if weighed and len(passed) < MAX_EXPLAINED:
            if named_away < away:
                named_away += self._name_away(b, chosen, min(away - named_away, EXPLAIN_SAMPLE),
                                              declined, expired, passed)
            if outside and len(passed) < MAX_EXPLAINED:
                named_out = self._name_outside(b, members, min(outside, EXPLAIN_SAMPLE),
                                               passed)
        why["offered"] = chosen
        if b.condition is not None:
            why["condition"] = b.condition.text
        why["passed"] = passed
        why["counts"] = {
            "members": len(members), "eligible": len(eligible), "available": available,
            "declined": len(declined) if declined else 0,
            "expired": len(expired) if expired else 0,
            "more_available": available - 1 - named_live, "more_unavailable": away - named_away,
            "more_not_eligible": outside - named_out}

    @staticmethod
    def _name_gone(b: Bucket, chosen: str, declined: set[str] | None,
                   expired: set[str] | None, passed: list[dict]) -> tuple[int, int]:
        """Name in `passed` the eligible agents who declined the task, then those who let an
        offer of it expire. Returns how many of them are available, and not available."""
        live, eligible = b.agent_live, b.eligible
        named_live = named_away = 0
        for gone, reason in ((declined, "declined"), (expired, "expired")):
            for aid in itertools.islice(gone or (), EXPLAIN_LOOK):
                if len(passed) == MAX_EXPLAINED:
                    break
                if aid == chosen or aid not in eligible or (
                        reason == "expired" and declined and aid in declined):
                    continue
                passed.append({"agent": aid, "reason": reason})
                if aid in live:
                    named_live += 1
                else:
                    named_away += 1
        return named_live, named_away

    def _name_away(self, b: Bucket, chosen: str, left: int, declined: set[str] | None,
                   expired: set[str] | None, passed: list[dict]) -> int:
        """Name in `passed` eligible agents not available now (at most `left` of them, looking
        at EXPLAIN_LOOK of the bucket's eligible agents at most), each with its reason. Returns
        how many were named."""
        live, agents, channel = b.agent_live, self.agents, b.channel
        cv, avail, named = channel.value, Presence.AVAILABLE, 0
        for aid in itertools.islice(b.eligible, EXPLAIN_LOOK):
            if aid in live or aid == chosen or (declined and aid in declined) or (
                    expired and aid in expired):
                continue
            a = agents[aid]
            # The usual case written out (no free slot on the channel), else the full list.
            held = a.held
            n = [*held.values()].count(channel) if held else 0
            cap = a.capacity.get(channel, 0)
            if (n >= cap and a.status is avail and a.offer_id is None and not a.disabled
                    and not (a.paused or a.unreachable or a.engaged)):
                passed.append({"agent": aid, "reason": "no_capacity", "channel": cv,
                               "held": n, "capacity": cap})
            else:
                passed.append(self._unavailable(a, channel, cv))
            named += 1
            if len(passed) == MAX_EXPLAINED or named == left:
                break
        return named

    def _name_outside(self, b: Bucket, members: Iterable[str], left: int,
                      passed: list[dict]) -> int:
        """Name in `passed` members not eligible for the bucket (at most `left`, looking at
        EXPLAIN_LOOK members at most), with `_ineligible_reason`'s words. Returns how many."""
        eligible, agents, channel, req = b.eligible, self.agents, b.channel, b.requirement
        named = 0
        for aid in itertools.islice(members, EXPLAIN_LOOK):
            if aid in eligible:
                continue
            detail = self._ineligible_reason(agents[aid], channel, req, b.condition)
            passed.append({"agent": aid, "reason": "not_eligible",
                           "detail": detail or "does not meet the requirement"})
            named += 1
            if len(passed) == MAX_EXPLAINED or named == left:
                break
        return named

    def _unavailable(self, agent: Agent, channel: Channel, cv: str) -> dict:
        """Why an eligible agent cannot be offered a task of `channel` (`cv`: its value) now:
        `_open_channels`' checks, one at a time, as a reason code and its figures (`passed` in
        an explanation). Written for speed: it runs for up to MAX_EXPLAINED agents a decision."""
        aid = agent.id
        if agent.disabled:
            return {"agent": aid, "reason": "disabled"}
        status = agent.status
        if status is not Presence.AVAILABLE:
            if status is Presence.BREAK:
                return {"agent": aid, "reason": "break", "break_reason": agent.break_reason or ""}
            return {"agent": aid, "reason": _STATUS_REASONS.get(status, "offline")}
        if agent.offer_id is not None:
            return {"agent": aid, "reason": "offer_pending",
                    "channel": agent.offer_channel.value if agent.offer_channel else cv}
        if agent.paused or agent.unreachable or agent.engaged:
            for reason, chans in (("paused", agent.paused), ("unreachable", agent.unreachable),
                                  ("engaged", agent.engaged)):
                if channel in chans:
                    return {"agent": aid, "reason": reason, "channel": cv}
        held = agent.held
        n = [*held.values()].count(channel) if held else 0
        cap = agent.capacity.get(channel, 0)
        if n >= cap:
            return {"agent": aid, "reason": "no_capacity", "channel": cv, "held": n,
                    "capacity": cap}
        allows = self.matrix_of(agent).allows
        for ch in itertools.chain(held.values(), agent.engaged):
            if channel not in allows.get(ch, _NO_CHANNELS):
                return {"agent": aid, "reason": "interruption", "channel": cv,
                        "holding": ch.value}
        return {"agent": aid, "reason": "not_listed"}  # free, listed again after this call

    @staticmethod
    def _ineligible_reason(agent: Agent, channel: Channel, req: dict[str, int],
                           cond: Condition | None = None) -> str | None:
        """Why a member does not meet a bucket's requirement, in words (None: they meet it):
        the channel not handled, no capacity on it, a skill missing or below the level required
        (naming the skill and both levels), the requirement expression not met (naming the
        condition). For explanations only: `_eligible` is the rule."""
        if channel not in agent.channels:
            return f"does not handle {channel.value}"
        if agent.capacity.get(channel, 0) <= 0:
            return f"no {channel.value} capacity"
        skills = agent.skills
        for skill, level in req.items():
            have = skills.get(skill)
            if have is None:
                return f"skill {skill} missing ({level} required)"
            if have < level:
                return f"skill {skill} {have} < {level}"
        if cond is not None and not cond.meets(skills, agent.attributes):
            return f"does not meet {cond.text}"
        return None


def _skip_declined(why: dict) -> None:
    """An agent rule's `skipped` names all who declined the task (up to MAX_EXPLAINED), not
    only those met before the one chosen: also those not listed at the time (the agent who
    just declined it is listed again only after the decision)."""
    skipped = why["skipped"]
    for p in why["passed"]:
        if p["reason"] == "declined" and len(skipped) < MAX_EXPLAINED:
            skipped.setdefault(p["agent"], "declined")


def _number(value: object) -> TypeGuard[int | float]:
    """A real number (not a bool), finite or not."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _name_kept(why: dict) -> None:
    """The available agents an e-mail passed over because they are kept free for calls (the
    blend's reserve), named first in `passed` (they are available: the counts had them)."""
    kept = [aid for aid, r in why["skipped"].items() if r == "kept_for_calls"]
    named = [{"agent": aid, "reason": "kept_for_calls"} for aid in kept]
    why["passed"] = (named + why["passed"])[:MAX_EXPLAINED]
    why["counts"]["more_available"] = max(0, why["counts"]["more_available"] - len(kept))
