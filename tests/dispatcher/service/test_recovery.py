"""Tests of dispatcher.service.recovery: after a crash, the SIP calls that died with the process
are settled at start (waiting callers abandoned as `call_lost` with the time waited until the
process's last sign of life, answered calls ended into wrap-up), in one commit, before routing
resumes; CTI calls stay queued; offers in flight are offered again. MemoryStore and a Clock: a
"crash" is a second stack on the same store that never heard of the first one's end."""

from __future__ import annotations

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.tasks import Channel, Task, TaskState
from dispatcher.service.calls import CALL_LOST, Calls, call_task_id
from dispatcher.service.recovery import ABANDON, END, LostCall, Recovery, lost_calls
from dispatcher.storage.memory import MemoryStore
from dispatcher.storage.phones import MemoryPhones
from tests.dispatcher.service.stacks import (
    PHONE_OFFER_TIMEOUT,
    T0,
    WRAP_UP_SECONDS,
    Stack,
    build_stack,
    support_queue,
)

CALLER = "+3225550100"
DOWN_FOR = 500.0  # seconds between the last event of the first process and the restart


class CountingStore(MemoryStore):
    """A MemoryStore that counts its commits (`record`)."""

    def __init__(self) -> None:
        super().__init__()
        self.records = 0

    def record(self, changes):
        self.records += 1
        return super().record(changes)


def calls_for(s: Stack) -> Calls:
    calls = Calls(s.assignment, s.intake, MemoryPhones())
    s.wait(calls.start())
    return calls


@pytest.fixture
def crashed() -> tuple[CountingStore, dict[str, float]]:
    """A first process took five calls, then died without a word: `ann` was talking on
    `answered` (answered at T0+5), `bob` was being rung for `offered`, `q1` and `q2` waited,
    and `pbx` was a CTI call waiting at its PBX. Returns the store and when each came."""
    store = CountingStore()
    s = build_stack(store)
    s.put_queue(support_queue())
    calls = calls_for(s)
    s.put_agent("ann", 7)
    s.put_agent("bob", 7)
    s.login("ann")
    came = {"answered": s.clock.seconds()}
    s.wait(calls.arrived("answered", CALLER, "support", source="sip"))
    s.advance(5)
    s.wait(calls.answered("answered", "ann"))
    s.login("bob")
    s.advance(1)
    came["offered"] = s.clock.seconds()
    s.wait(calls.arrived("offered", CALLER, "support", source="sip"))
    assert s.router.tasks[call_task_id("offered")].state is TaskState.OFFERED
    for name, after in (("q1", 3.0), ("q2", 4.0), ("pbx", 2.0)):
        s.advance(after)
        came[name] = s.clock.seconds()
        s.wait(calls.arrived(name, CALLER, "support",
                             source="cti" if name == "pbx" else "sip"))
    came["last"] = s.clock.seconds()  # the last event of the first process
    return store, came


def restart(store: CountingStore, came: dict[str, float]) -> tuple[Stack, Calls, list]:
    s = build_stack(store, start=came["last"] + DOWN_FOR)
    calls = Calls(s.assignment, s.intake, MemoryPhones())
    store.records = 0
    lost = s.wait(Recovery(s.assignment, calls, store).restore(s.wait(store.load_state())))
    s.wait(calls.start())
    return s, calls, lost


def test_lost_sip_callers_are_abandoned_with_the_time_they_waited(crashed) -> None:
    store, came = crashed
    s, _, lost = restart(store, came)
    assert {c.task_id: c.fate for c in lost} == {
        call_task_id("answered"): END, call_task_id("offered"): ABANDON,
        call_task_id("q1"): ABANDON, call_task_id("q2"): ABANDON}
    for name in ("offered", "q1", "q2"):
        task_id = call_task_id(name)
        assert task_id not in s.router.tasks
        abandoned = [e for e in s.events(task_id) if e.kind == ev.TASK_ABANDONED]
        assert len(abandoned) == 1
        # Lost at the last sign of life of the first process, not at the restart.
        assert abandoned[0].at == came["last"]
        assert abandoned[0].data == {"waited": came["last"] - came[name], "reason": CALL_LOST}
    summaries = {t.id: t for t in s.wait(store.list_tasks())}
    assert summaries[call_task_id("q1")].state == "abandoned"


def test_an_answered_call_is_ended_and_its_agent_wraps_up(crashed) -> None:
    store, came = crashed
    s, _, _ = restart(store, came)
    task_id = call_task_id("answered")
    assert s.router.tasks[task_id].state is TaskState.WRAP_UP
    ended = [e for e in s.events(task_id) if e.kind == ev.CALL_ENDED]
    # Lost from sight when the process died; how long they went on talking nobody knows.
    assert [(e.at, e.data) for e in ended] == [(came["last"], {"by": CALL_LOST,
                                                               "talk_seconds": None})]
    assert ev.TASK_ABANDONED not in s.kinds(task_id)  # answered: never counted as abandoned
    s.advance(WRAP_UP_SECONDS)  # the wrap-up's timer, armed from now, ends it
    assert task_id not in s.router.tasks
    assert s.kinds(task_id)[-1] == ev.TASK_COMPLETED


def test_everything_is_settled_in_one_commit_before_routing_resumes(crashed) -> None:
    store, came = crashed
    s, _, _ = restart(store, came)
    # One commit for the restore (the offer in flight expired), one for all the lost calls.
    assert store.records == 2
    assert set(s.router.tasks) == {call_task_id("answered"), call_task_id("pbx")}


def test_cti_calls_wait_on_and_agents_coming_back_get_no_ghost_offers(crashed) -> None:
    store, came = crashed
    s, _, _ = restart(store, came)
    pbx = s.router.tasks[call_task_id("pbx")]
    assert pbx.state is TaskState.QUEUED and pbx.created_at == came["pbx"]
    s.login("bob")
    offers = s.offers_made()
    assert [o.task_id for o in offers] == [pbx.id]  # nothing of the lost SIP calls
    s.advance(PHONE_OFFER_TIMEOUT)  # the new offer's timer runs: RONA, back in the queue
    assert s.router.tasks[pbx.id].state is TaskState.QUEUED
    assert ev.OFFER_EXPIRED in s.kinds(pbx.id)


def test_a_second_restart_finds_nothing_left_to_settle(crashed) -> None:
    store, came = crashed
    restart(store, came)
    s, _, lost = restart(store, {"last": came["last"] + DOWN_FOR})
    assert lost == []
    assert call_task_id("pbx") in s.router.tasks


def phone_task(task_id: str, state: TaskState, source: str = "sip", **attributes) -> Task:
    task = Task(id=task_id, customer_id=None, created_at=T0, channel=Channel.PHONE,
                queue="support", attributes={"source": source, **attributes})
    task.state = state
    task.updated_at = T0 + 10
    return task


def test_lost_calls_rule() -> None:
    tasks = [
        phone_task("q", TaskState.QUEUED), phone_task("o", TaskState.OFFERED),
        phone_task("rung", TaskState.ASSIGNED),  # accepted on the console, phone not answered
        phone_task("talk", TaskState.ASSIGNED, answered_at=T0 + 3),
        phone_task("w", TaskState.WRAP_UP), phone_task("cti", TaskState.QUEUED, "cti"),
        Task(id="mail", customer_id=None, created_at=T0, channel=Channel.EMAIL,
             queue="support", attributes={"source": "sip"}),
    ]
    assert lost_calls(tasks, T0 + 50, T0 + 900) == [
        LostCall("q", ABANDON, T0 + 50), LostCall("o", ABANDON, T0 + 50),
        LostCall("rung", ABANDON, T0 + 50), LostCall("talk", END, T0 + 50)]
    # Never before the task's own last change, never after now, and with no log: its change.
    assert lost_calls(tasks[:1], T0 + 5, T0 + 900) == [LostCall("q", ABANDON, T0 + 10)]
    assert lost_calls(tasks[:1], T0 + 5000, T0 + 900) == [LostCall("q", ABANDON, T0 + 900)]
    assert lost_calls(tasks[:1], None, T0 + 900) == [LostCall("q", ABANDON, T0 + 10)]


def test_a_call_rung_but_never_answered_is_taken_back_and_abandoned() -> None:
    store = CountingStore()
    s = build_stack(store)
    s.put_queue(support_queue())
    calls = calls_for(s)
    s.put_agent("ann", 7)
    s.login("ann")
    task = s.wait(calls.arrived("rung", CALLER, "support", source="sip"))
    offer = s.last_offer("ann")
    s.wait(s.sessions.accept("ann", offer.id))  # the console's accept; the phone still rings
    assert s.router.tasks[task.id].state is TaskState.ASSIGNED
    s, _, lost = restart(store, {"last": s.clock.seconds()})
    assert [c.fate for c in lost] == [ABANDON]
    kinds = s.kinds(task.id)
    assert kinds[-2:] == [ev.TASK_REQUEUED, ev.TASK_ABANDONED]
    assert task.id not in s.router.tasks
    assert not s.router.agents["ann"].held
