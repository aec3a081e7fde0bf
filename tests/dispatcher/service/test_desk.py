"""The service side of the agent's desk: extending a wrap-up (the timer is re-armed, bounded, by
the holder only, logged in the task's trail), disposition codes checked when an agent completes,
the pull list read model (order, eligibility, customers' names), and the answer time of a call
kept with the task."""

from __future__ import annotations

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.errors import Forbidden, InvalidValue, TaskTaken
from dispatcher.domain.queues import MAX_WRAP_UP_EXTENSION, Mode
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.assignment import WRAP_UP_TIMEOUT_DISPOSITION
from dispatcher.service.intake import email_identity
from dispatcher.service.queries import PullItem
from tests.dispatcher.service.stacks import (
    T0,
    WRAP_UP_SECONDS,
    build_stack,
    failure_of,
    result,
    support_queue,
)

CODES = (("solved", "Solved"), ("callback", "Call back later"))


@pytest.fixture
def wrapping():
    """ann took a call and is in wrap-up since T0 + 10; bob is logged in."""
    s = build_stack()
    s.put_queue(support_queue(dispositions=CODES))
    s.put_agent("ann", 8)
    s.put_agent("bob", 8)
    s.login("ann")
    s.task = s.call()
    result(s.sessions.accept("ann", s.last_offer("ann").id))
    s.login("bob")
    s.advance(10)
    result(s.sessions.wrap_up("ann", s.task.id))
    return s


def completed(s, task_id):
    return [e for e in s.events(task_id) if e.kind == ev.TASK_COMPLETED]


def test_an_extension_re_arms_the_wrap_up_timer(wrapping):
    s = wrapping
    s.advance(WRAP_UP_SECONDS - 5)
    outcome = result(s.sessions.extend_wrap_up("ann", s.task.id, 60))
    assert [e.kind for e in outcome.events] == [ev.TASK_WRAP_UP_EXTENDED]
    s.advance(10)  # the old end has passed: still in wrap-up
    assert s.router.tasks[s.task.id].state is TaskState.WRAP_UP
    s.advance(54)
    assert s.router.tasks[s.task.id].state is TaskState.WRAP_UP
    s.advance(1)  # 30 + 60 s after the wrap-up began
    assert s.task.id not in s.router.tasks
    (done,) = completed(s, s.task.id)
    assert done.data["disposition"] == WRAP_UP_TIMEOUT_DISPOSITION
    assert done.at == T0 + 10 + WRAP_UP_SECONDS + 60
    trail = [e for e in s.events(s.task.id) if e.kind == ev.TASK_WRAP_UP_EXTENDED]
    assert trail[0].data["seconds"] == 60 and trail[0].actor == "agent:ann"


def test_an_extension_is_bounded_and_survives_a_restart(wrapping):
    s = wrapping
    result(s.sessions.extend_wrap_up("ann", s.task.id, MAX_WRAP_UP_EXTENSION))
    f = failure_of(s.sessions.extend_wrap_up("ann", s.task.id, 1))
    assert f.check(InvalidValue) and "0 s more" in str(f.value)
    # The window is kept with the task: a new router rebuilt from the store arms the same end.
    fresh = build_stack(s.store, start=s.clock.seconds())
    result(fresh.assignment.restore(result(s.store.load_state())))
    assert fresh.router.wrap_up_window(s.task.id)[0] == T0 + 10 + WRAP_UP_SECONDS + 600
    fresh.advance(WRAP_UP_SECONDS + MAX_WRAP_UP_EXTENSION - 1)
    assert fresh.router.tasks[s.task.id].state is TaskState.WRAP_UP
    fresh.advance(1)
    assert s.task.id not in fresh.router.tasks


def test_only_the_holder_extends(wrapping):
    s = wrapping
    assert failure_of(s.sessions.extend_wrap_up("bob", s.task.id, 60)).check(Forbidden)
    assert s.router.wrap_up_window(s.task.id)[0] == T0 + 10 + WRAP_UP_SECONDS


def test_completing_with_a_code_the_queue_does_not_list_is_invalid(wrapping):
    s = wrapping
    f = failure_of(s.sessions.complete("ann", s.task.id, "wrong_queue", "free text is fine"))
    assert f.check(InvalidValue) and f.value.code == "invalid_value"
    assert s.router.tasks[s.task.id].state is TaskState.WRAP_UP
    # Someone else's task: forbidden, whatever the code.
    assert failure_of(s.sessions.complete("bob", s.task.id, "nope")).check(Forbidden)
    result(s.sessions.complete("ann", s.task.id, "callback", "rings back at 5, any text"))
    (done,) = completed(s, s.task.id)
    assert done.data == {"disposition": "callback", "notes": "rings back at 5, any text"}


def test_outcomes_the_system_names_are_not_checked_against_the_codes(wrapping):
    s = wrapping
    result(s.sessions.complete("ann", s.task.id, "redirected", coded=False))
    assert completed(s, s.task.id)[0].data["disposition"] == "redirected"


def test_a_queue_without_codes_takes_any_code():
    s = build_stack()
    s.put_queue(support_queue())
    s.put_agent("ann", 8)
    s.login("ann")
    task = s.call()
    result(s.sessions.accept("ann", s.last_offer("ann").id))
    result(s.sessions.complete("ann", task.id, "whatever_we_like"))
    assert completed(s, task.id)[0].data["disposition"] == "whatever_we_like"


# ---------------------------------------------------------------------- pull lists


@pytest.fixture
def pull():
    s = build_stack()
    s.put_queue(support_queue(mode=Mode.PULL))
    s.put_agent("ann", 8)
    s.put_agent("cy", 2)  # below the requirement (support 5)
    s.login("ann")
    return s


def mail(s, address, subject, **kw):
    task = result(s.intake.submit(Channel.EMAIL, "support", identity=email_identity(address),
                                  customer_name=kw.pop("name", ""),
                                  attributes={"subject": subject, "from": address,
                                              "request": kw.pop("request", None)}, **kw))
    s.settle()
    return task


def test_the_pull_list_read_model(pull):
    s = pull
    first = mail(s, "ann@example.org", "Invoice", name="Ann Example", request="SB-000001")
    s.advance(30)
    second = mail(s, "bo@example.org", "Urgent", priority=7)
    s.advance(10)
    assert s.queries.pulls("ann") and not s.queries.pulls("nobody")
    listed = result(s.queries.pull_list("ann", s.clock.seconds()))
    assert listed.total == 2
    assert [i.task_id for i in listed.items] == [second.id, first.id]  # priority first
    assert listed.items[1] == PullItem(
        task_id=first.id, channel="email", queue="support", request="SB-000001",
        subject="Invoice", caller=None, customer_id=first.customer_id, customer="Ann Example",
        created_at=T0, age=40.0, deadline=None, priority=0)
    assert listed.items[0].customer == "bo@example.org"  # no name known: the address
    assert result(s.queries.pull_list("ann", s.clock.seconds(), limit=1)).items[0].task_id \
        == second.id
    assert result(s.queries.pull_list("cy", s.clock.seconds())).total == 0
    result(s.sessions.pick("ann", second.id))
    assert [i.task_id for i in result(s.queries.pull_list("ann", s.clock.seconds())).items] \
        == [first.id]


def test_a_pick_that_comes_second_is_task_taken(pull):
    s = pull
    s.put_agent("bo", 8)
    s.login("bo")
    task = mail(s, "ann@example.org", "Invoice")
    result(s.sessions.pick("bo", task.id))
    f = failure_of(s.sessions.pick("ann", task.id))
    assert f.check(TaskTaken) and f.value.code == "task_taken"


def test_pulls_is_false_for_push_queue_members():
    s = build_stack()
    s.put_queue(support_queue())
    s.put_agent("ann", 8)
    assert not s.queries.pulls("ann")


# ---------------------------------------------------------------------- calls


def test_the_answer_time_of_a_call_is_kept_with_the_task():
    from dispatcher.service.calls import ANSWERED_AT, Calls
    from dispatcher.storage.memory import MemoryStore

    s = build_stack()
    s.put_queue(support_queue())
    s.put_agent("ann", 8)
    s.login("ann")
    calls = Calls(s.assignment, s.intake, MemoryStore())
    task = result(calls.arrived("call-1", "+3225550100", "support", source="cti",
                                attributes={ANSWERED_AT: 1.0}))  # not the PBX's to say
    assert ANSWERED_AT not in s.router.tasks[task.id].attributes
    s.advance(3)
    result(calls.answered("call-1", "ann"))
    stored = {t.id: t for t in result(s.store.load_state()).open_tasks}[task.id]
    assert stored.attributes[ANSWERED_AT] == T0 + 3
    assert stored.attributes["caller"] == "+3225550100"
    s.advance(42)
    ended = result(calls.ended("call-1", "caller"))
    (e,) = [e for e in ended.events if e.kind == ev.CALL_ENDED]
    assert e.data["talk_seconds"] == 42.0
