"""The start-up's loops over every open task run in slices (service/slices.py): during the
restore of many tasks the reactor runs other calls between two slices (a timer, the lease's
renewal), and each turn it waits for is one slice at most. A `task.Clock` stands for the
reactor: a probe call re-arms itself at once (`callLater(0)`) and records what it sees each time
the reactor gets a turn."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent
from dispatcher.domain.tasks import Channel, Task, TaskState
from dispatcher.service.calls import Calls
from dispatcher.service.ports import State
from dispatcher.service.recovery import Recovery
from dispatcher.service.slices import SLICE
from dispatcher.storage.memory import MemoryStore
from dispatcher.storage.phones import MemoryPhones
from tests.dispatcher.service.stacks import T0, build_stack, result, support_queue

MANY = 3 * SLICE + 7  # four slices


def many_tasks(n: int = MANY, at: float = T0 - 1000, offered: int = -1) -> list[Task]:
    """`n` waiting e-mails, one of them (`offered`) offered to ann when the process stopped."""
    tasks = [Task(id=f"t{i:05d}", channel=Channel.EMAIL, queue="support", customer_id=None,
                  created_at=at + i * 0.01) for i in range(n)]
    tasks[offered].state, tasks[offered].agent_id = TaskState.OFFERED, "ann"
    tasks[offered].offer_id = "o1"
    return tasks


def state(tasks: list[Task]) -> State:
    return State(queues=[support_queue()], agents=[Agent("ann", skills={"support": 7},
                                                         queues={"support"})],
                 open_tasks=tasks, declines=[], calendars=[])


class Probe:
    """A call the reactor runs at each of its turns until `until` has fired: what it saw."""

    def __init__(self, clock, look) -> None:
        self.clock, self.look = clock, look
        self.seen: list = []
        self.until: Deferred | None = None

    def start(self, until: Deferred) -> None:
        self.until = until
        self.clock.callLater(0, self.tick)

    def tick(self) -> None:
        assert self.until is not None
        self.seen.append((self.look(), self.until.called))
        if not self.until.called:
            self.clock.callLater(0, self.tick)


def test_the_reactor_runs_other_calls_between_slices_of_the_routers_restore():
    s = build_stack()
    probe = Probe(s.clock, lambda: len(s.router.tasks))
    fired = []
    s.clock.callLater(0, fired.append, "a timer due during the restore")

    d = s.assignment.restore(state(many_tasks()))
    probe.start(d)
    assert not d.called  # the first slice only: the rest waits for the reactor's turns
    s.clock.advance(0)

    restored = result(d)
    assert fired == ["a timer due during the restore"]
    during = [n for n, done in probe.seen if not done]
    assert any(0 < n < MANY for n in during), probe.seen  # turns while the router filled up
    steps = [b - a for a, b in zip(during, during[1:], strict=False)]
    assert max(steps) <= SLICE  # no turn waited for more than one slice
    assert len(s.router.tasks) == MANY
    assert [e.kind for e in restored.events] == [ev.OFFER_EXPIRED]


def test_timers_armed_by_the_restore_fire_after_its_changes_are_handed_to_the_store():
    """A task's escalation step already due at the restart fires between the slices of the
    arming, never before the restore's own changes (the offers over) are committed."""
    s = build_stack()
    # Every step (STEP_AFTER) is due already; the first task's timer is armed in the first
    # slice, so it would fire at the first turn if the restore armed before committing.
    tasks = many_tasks(at=T0 - 10_000, offered=0)
    d = s.assignment.restore(state(tasks))
    s.clock.advance(0)
    result(d)
    kinds = [e.kind for e in s.wait(s.store.task_events(tasks[0].id))]
    assert kinds.index(ev.OFFER_EXPIRED) < kinds.index(ev.TASK_ESCALATED), kinds
    assert all(s.router.tasks[t.id].step == 1 for t in tasks)


def test_the_lost_calls_and_the_callbacks_are_looked_for_in_slices():
    store = MemoryStore()
    s = build_stack(store)
    calls = Calls(s.assignment, s.intake, MemoryPhones())
    probe = Probe(s.clock, lambda: len(s.router.tasks))
    d = Recovery(s.assignment, calls, store).restore(state(many_tasks()))
    probe.start(d)
    s.clock.advance(0)
    assert result(d) == []
    # Before the router holds a task: the lost calls looked for, then the stand-ins, four
    # slices each (three turns each; the probe starts after the first).
    assert sum(1 for n, done in probe.seen if n == 0 and not done) >= 5, probe.seen
    turns_in_recovery = len(probe.seen)

    d = calls.start()  # the callbacks' loop over the open tasks: four slices
    probe.start(d)
    s.clock.advance(0)
    result(d)
    assert sum(1 for _, done in probe.seen[turns_in_recovery:] if not done) >= 2
