"""The service layer wired for tests: the real Router, a store and a virtual clock
(`twisted.internet.task.Clock`) for the timers; no reactor, no sleeps: time moves when a test
advances the clock.

With the MemoryStore every Deferred has already fired when the call returns (`result(d)` reads
it); `HeldStore` holds the commits back instead, for the tests about "announce only after the
commit". With a SqlStore (tests/dispatcher/runtime) the stack is built with the storage wiring's
`wait` and `settle`, which drive its reactor stand-in until the commits are done.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import EscalationStep, Queue
from dispatcher.domain.routing import Outcome, Router
from dispatcher.domain.tasks import Channel
from dispatcher.service.assignment import Assignment
from dispatcher.service.calls import Calls
from dispatcher.service.configuration import Configuration
from dispatcher.service.intake import Intake
from dispatcher.service.ports import Changes
from dispatcher.service.queries import Queries
from dispatcher.service.sessions import Sessions
from dispatcher.storage.memory import MemoryStore
from dispatcher.storage.phones import MemoryPhones

# A Tuesday, 2026-03-03 10:00:00 UTC: the clock of every stack starts here.
T0 = 1_772_532_000.0
PHONE_OFFER_TIMEOUT = 20.0
EMAIL_OFFER_TIMEOUT = 60.0
WRAP_UP_SECONDS = 30.0
STEP_AFTER = 300.0


def result(d: Deferred) -> Any:
    """The result of a Deferred that has already fired (raise its failure)."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def failure_of(d: Deferred) -> Failure:
    """The failure of a Deferred that has already failed."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    assert isinstance(out[0], Failure), f"expected a failure, got {out[0]!r}"
    return out[0]


def support_queue(**kw: Any) -> Queue:
    """Calls and mails needing support >= 5; after STEP_AFTER s, support >= 1 is enough."""
    defaults: dict[str, Any] = dict(
        requirement={"support": 5},
        steps=(EscalationStep(STEP_AFTER, {"support": 1}),),
        offer_timeout={Channel.PHONE: PHONE_OFFER_TIMEOUT, Channel.EMAIL: EMAIL_OFFER_TIMEOUT},
        wrap_up_seconds=WRAP_UP_SECONDS,
    )
    defaults.update(kw)
    return Queue("support", **defaults)


@dataclass
class Stack:
    """One dispatcher's service layer on a store."""

    store: Any
    clock: Clock
    router: Router
    assignment: Assignment
    intake: Intake
    sessions: Sessions
    queries: Queries
    configuration: Configuration
    wait: Callable[[Deferred], Any] = result
    settle: Callable[[], None] = lambda: None
    heard: list[Outcome] = field(default_factory=list)

    def put_queue(self, queue: Queue) -> None:
        self.wait(ensureDeferred(self.configuration.change_queue(queue)))

    def put_agent(self, agent_id: str, support: int, queues=("support",), **kw: Any) -> None:
        self.wait(ensureDeferred(self.configuration.change_agent(
            Agent(agent_id, skills={"support": support}, queues=set(queues), **kw))))

    def login(self, agent_id: str) -> Outcome:
        return self.wait(self.sessions.login(agent_id))

    def call(self, queue: str = "support", **kw: Any):
        task = self.wait(self.intake.submit(Channel.PHONE, queue, **kw))
        self.settle()  # the routing decision that followed the intake
        return task

    def advance(self, seconds: float) -> None:
        """Move the clock; the timers that fire commit their outcomes."""
        self.clock.advance(seconds)
        self.settle()

    def offers_made(self) -> list:
        return [o for outcome in self.heard for o in outcome.offers]

    def last_offer(self, agent_id: str):
        return [o for o in self.offers_made() if o.agent_id == agent_id][-1]

    def events(self, task_id: str) -> list:
        return self.wait(self.store.task_events(task_id))

    def kinds(self, task_id: str) -> list[str]:
        return [e.kind for e in self.events(task_id)]


def build_stack(store: Any = None, start: float = T0, wait: Callable[[Deferred], Any] = result,
                settle: Callable[[], None] | None = None) -> Stack:
    store = MemoryStore() if store is None else store
    clock = Clock()
    clock.advance(start)
    offer_ids = map("o{}".format, itertools.count(1)).__next__
    task_ids = map("t{}".format, itertools.count(1)).__next__
    router = Router(new_offer_id=offer_ids)
    assignment = Assignment(router, store, clock)
    stack = Stack(
        store=store,
        clock=clock,
        router=router,
        assignment=assignment,
        intake=Intake(assignment, store, clock, new_id=task_ids),
        sessions=Sessions(assignment),
        queries=Queries(router, store),
        configuration=Configuration(store, assignment.clock, assignment=assignment),
        wait=wait,
    )
    if settle is not None:
        stack.settle = settle
    assignment.listen(stack.heard.append)
    return stack


class HeldStore:
    """A MemoryStore whose acknowledgements (`record`, and `create_task`, `intake_task` or
    `create_mail_task` when `hold_intake`) wait until the test releases them. The data is handed over at call time, as
    the port says stores copy what they are given then; only the Deferreds stay unfired."""

    def __init__(self, hold_intake: bool = False) -> None:
        self.inner = MemoryStore()
        self.hold_intake = hold_intake
        self.held: list[tuple[Any, Deferred]] = []
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _hold(self, done: Deferred) -> Deferred:
        d: Deferred = Deferred()
        self.held.append((result(done), d))
        return d

    def create_task(self, task, identity, customer_name, events) -> Deferred:
        self.calls.append("create_task")
        done = self.inner.create_task(task, identity, customer_name, events)
        return self._hold(done) if self.hold_intake else done

    def intake_task(self, task, identity, customer_name, events) -> Deferred:
        self.calls.append("intake_task")
        done = self.inner.intake_task(task, identity, customer_name, events)
        return self._hold(done) if self.hold_intake else done

    def create_mail_task(self, draft, identity, customer_name, numbered=None,
                         ack_peer=None) -> Deferred:
        self.calls.append("create_mail_task")
        done = self.inner.create_mail_task(draft, identity, customer_name, numbered, ack_peer)
        return self._hold(done) if self.hold_intake else done

    def record(self, changes: Changes) -> Deferred:
        self.calls.append("record")
        return self._hold(self.inner.record(changes))

    def fail_first(self, error: Exception) -> None:
        """Fail the first held Deferred with `error` (its transaction did not commit)."""
        _, d = self.held.pop(0)
        d.errback(error)

    def release(self) -> None:
        """Fire the held Deferreds in order (and those held meanwhile)."""
        while self.held:
            value, d = self.held.pop(0)
            d.callback(value)


def held_stack(agent: str | None = None) -> tuple[HeldStore, Stack]:
    """A stack whose store holds each commit until released; the support queue, and `agent`
    signed in (None: nobody to offer to, a new task waits)."""
    store = HeldStore(hold_intake=True)
    s = build_stack(store)
    s.put_queue(support_queue())
    if agent is not None:
        s.put_agent(agent, 8)
        login = s.sessions.login(agent)
        store.release()
        result(login)
    store.calls.clear()
    return store, s


def support_stack() -> Stack:
    """`build_stack` with the support queue (`support_queue`): the phone tests' start."""
    stack = build_stack()
    stack.put_queue(support_queue())
    return stack


def calls_for(s: Stack, phones: MemoryPhones | None = None) -> Calls:
    """The phone channel's use cases on this stack, started (phone accounts in memory)."""
    calls = Calls(s.assignment, s.intake, phones or MemoryPhones())
    s.wait(calls.start())
    return calls
