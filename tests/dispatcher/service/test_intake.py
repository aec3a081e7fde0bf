"""Intake: routed, then committed with its routing in one transaction, then announced; customers identified; e-mail deadlines from the queue's rule
and business calendar; bad input fails the Deferred and stores nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.deadlines import BusinessCalendar
from dispatcher.domain.errors import DomainError, InvalidValue, UnknownQueue
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.intake import email_identity, phone_identity
from dispatcher.service.ports import Calendar, Changes
from tests.dispatcher.service.stacks import (
    T0,
    build_stack,
    failure_of,
    held_stack,
    result,
    support_queue,
)

DAY = 86400.0


def at(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_a_new_task_commits_with_its_routing_in_one_transaction_before_anyone_hears():
    store, s = held_stack("ann")
    heard = len(s.heard)

    d = s.intake.submit(Channel.PHONE, "support")

    assert not d.called, "intake acknowledged before the commit"
    assert s.router.tasks["t1"].state is TaskState.OFFERED  # routed in memory
    assert len(s.heard) == heard, "the offer was announced before its commit"
    assert store.calls == ["create_task"], "one transaction: the task and its routing"
    [row] = result(store.inner.list_tasks())  # what the transaction holds (handed at call time)
    assert (row.id, row.state, row.agent_id) == ("t1", "offered", "ann")
    kinds = [e.kind for e in result(store.inner.task_events("t1"))]
    assert kinds == [ev.TASK_CREATED, ev.TASK_QUEUED, ev.TASK_OFFERED]

    store.release()

    task = result(d)
    assert task.id == "t1" and task.customer_id
    assert s.router.tasks["t1"].customer_id == task.customer_id  # before the offer is told
    assert store.calls == ["create_task"], "the task's row was written once"
    assert s.last_offer("ann").task_id == "t1"


def test_a_task_whose_intake_fails_is_let_go_and_its_agent_served_again():
    store, s = held_stack("ann")
    heard = len(s.heard)
    first = s.intake.submit(Channel.PHONE, "support")  # offered to ann in memory
    second = s.intake.submit(Channel.PHONE, "support")  # waits: ann has an offer pending
    assert s.router.tasks["t2"].state is TaskState.QUEUED

    store.fail_first(RuntimeError("database went away"))

    f = failure_of(first)
    assert f.check(RuntimeError)
    assert "t1" not in s.router.tasks
    store.release()  # t2's intake, then the offer of t2 to ann
    assert result(second).id == "t2"
    assert s.router.tasks["t2"].state is TaskState.OFFERED
    told = [o.task_id for outcome in s.heard[heard:] for o in outcome.offers]
    assert told == ["t2"], "nobody hears of a task that was not stored"
    said = {e.task_id for outcome in s.heard[heard:] for e in outcome.events}
    assert "t1" not in said
    assert set(s.assignment._offer_timers) == {s.last_offer("ann").id}  # t1's is disarmed
    s.clock.advance(3600)  # t1's offer timer was disarmed: nothing fires for it
    assert "t1" not in s.router.tasks


def test_submit_fires_with_the_stored_task(stack):
    task = result(stack.intake.submit(
        Channel.EMAIL, "support", email_identity("ann@example.org"), "Ann",
        skills={"french": 2}, priority=7, attributes={"subject": "Invoice"}))

    assert task.channel is Channel.EMAIL and task.queue == "support"
    assert task.created_at == T0
    assert task.priority == 7
    assert task.base_skills == {"support": 5, "french": 2}
    [stored] = result(stack.store.list_tasks())
    assert (stored.id, stored.customer_id, stored.priority) == (task.id, task.customer_id, 7)
    kinds = stack.kinds(task.id)
    assert kinds[0] == ev.TASK_CREATED
    created = stack.events(task.id)[0]
    assert created.data["identity"] == ["email", "ann@example.org"]


def test_the_same_identity_is_the_same_customer_across_tasks_and_channels(stack):
    first = result(stack.intake.submit(Channel.EMAIL, "support",
                                       email_identity("Ann.Smith@Example.ORG"), "Ann"))
    again = result(stack.intake.submit(Channel.EMAIL, "support",
                                       email_identity("  ann.smith@example.org "), "Ann"))
    other = result(stack.intake.submit(Channel.EMAIL, "support",
                                       email_identity("bob@example.org"), "Bob"))
    anonymous = result(stack.intake.submit(Channel.PHONE, "support"))
    call = result(stack.intake.submit(Channel.PHONE, "support", phone_identity("+33 1 55 50 00 01")))
    call_again = result(stack.intake.submit(Channel.PHONE, "support",
                                            phone_identity("+33-1-55-50-00-01")))

    assert first.customer_id == again.customer_id
    assert other.customer_id != first.customer_id
    assert anonymous.customer_id not in (first.customer_id, other.customer_id)
    assert call.customer_id == call_again.customer_id != first.customer_id
    history = result(stack.queries.customer_history(first.customer_id))
    assert {t.id for t in history} == {first.id, again.id}


def test_email_identity_is_trimmed_and_lower_cased():
    assert email_identity("  Ann@Example.ORG\n").value == "ann@example.org"
    assert email_identity("Ann@Example.ORG").kind == "email"
    for bad in ("", "no-at-sign", "x" * 320 + "@example.org"):
        with pytest.raises(InvalidValue):
            email_identity(bad)


def test_phone_identity_keeps_digits_and_a_leading_plus():
    assert phone_identity("+33 (1) 55-50.00 01").value == "+33155500001"
    assert phone_identity("01 55 50 00 01").value == "0155500001"
    assert phone_identity("1+2+3").value == "123"
    assert phone_identity(" +44 20 7946 0018 ").kind == "phone"
    for bad in ("", "+", "call me", "++"):
        with pytest.raises(InvalidValue):
            phone_identity(bad)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"priority": 101}, InvalidValue),
        ({"priority": -1}, InvalidValue),
        ({"priority": "urgent"}, InvalidValue),
        ({"skills": {"support": 11}}, InvalidValue),
        ({"queue": "nope"}, UnknownQueue),
        ({"channel": "fax"}, InvalidValue),
    ],
)
def test_bad_input_fails_the_deferred_and_stores_nothing(stack, kwargs, error):
    args = {"channel": Channel.PHONE, "queue": "support"}
    args.update(kwargs)
    heard = len(stack.heard)

    d = stack.intake.submit(args.pop("channel"), args.pop("queue"), **args)

    f = failure_of(d)
    assert f.check(error), f
    assert isinstance(f.value, DomainError)
    assert result(stack.store.list_tasks()) == []
    assert stack.router.tasks == {}
    assert len(stack.heard) == heard


def test_a_duplicate_task_id_fails_and_keeps_the_first(stack):
    result(stack.intake.submit(Channel.PHONE, "support", task_id="call-1"))
    f = failure_of(stack.intake.submit(Channel.EMAIL, "support", task_id="call-1"))
    assert isinstance(f.value, DomainError)
    [stored] = result(stack.store.list_tasks())
    assert stored.channel == "phone"


def test_a_change_of_a_new_task_before_its_intake_commits_is_written_after_it():
    store, s = held_stack()
    new = s.intake.submit(Channel.PHONE, "support")
    cancel = s.sessions.cancel("t1", "duplicate", ev.SYSTEM)  # a supervisor, at once
    assert store.calls == ["create_task"], "a change written before the task's own row"
    store.release()
    assert result(new).id == "t1" and result(cancel) is not None
    assert store.calls == ["create_task", "record"]
    assert s.kinds("t1")[-1] == ev.TASK_CANCELLED


def test_a_change_of_a_new_task_whose_intake_fails_is_not_written():
    store, s = held_stack()
    new = s.intake.submit(Channel.PHONE, "support")
    cancel = s.sessions.cancel("t1", "duplicate", ev.SYSTEM)
    store.fail_first(RuntimeError("database went away"))
    assert failure_of(new).check(RuntimeError)
    assert failure_of(cancel).check(RuntimeError)
    store.release()
    assert store.calls == ["create_task"], "a change of a task the database does not have"
    assert "t1" not in s.router.tasks


def test_a_new_tasks_routing_that_changes_another_task_stores_that_change_too(stack):
    """Routing a new task changes no other task today; if it did, `_write` would store that
    change beside the intake (`record`), and fire once both are committed."""
    other = result(stack.intake.submit(Channel.EMAIL, "support"))
    new = stack.intake.draft(Channel.PHONE, "support", task_id="new")
    created = stack.intake.created(new, None)
    other.priority = 7
    moved = ev.Event(ev.TASK_CHANGED, T0, other.id, data={"priority": 7})

    def store_own(routing):
        d = stack.store.create_task(new, None, "", [created, *routing])
        return d.addCallback(stack.intake._stored, new)

    d = stack.intake._write(new, store_own, Changes(tasks=[new, other], events=[moved]))
    assert result(d) is new and new.customer_id
    stored = {t.id: t for t in result(stack.store.list_tasks())}
    assert stored[other.id].priority == 7 and "new" in stored
    assert stack.kinds("new") == [ev.TASK_CREATED]
    assert stack.kinds(other.id)[-1] == ev.TASK_CHANGED


def test_a_finished_task_id_given_again_fails_and_its_agent_is_not_kept_waiting(stack):
    stack.put_agent("ann", 8)
    stack.login("ann")
    first = stack.call(task_id="call-1")
    offer = stack.last_offer("ann")
    result(stack.sessions.accept("ann", offer.id))
    result(stack.sessions.complete("ann", first.id))
    assert "call-1" not in stack.router.tasks  # done: only the store knows the id now

    f = failure_of(stack.intake.submit(Channel.PHONE, "support", task_id="call-1"))

    assert isinstance(f.value, DomainError)
    assert "call-1" not in stack.router.tasks, "the refused task was let go"
    assert [o.task_id for o in stack.offers_made()] == ["call-1"]  # the refused one: never told
    stack.call(task_id="call-2")
    assert stack.last_offer("ann").task_id == "call-2", "ann was freed of the refused offer"


def test_email_deadline_follows_the_queue_rule_on_an_always_open_calendar():
    s = build_stack()
    s.put_queue(support_queue(deadline_rule="sliding 24h"))
    mail = result(s.intake.submit(Channel.EMAIL, "support"))
    call = result(s.intake.submit(Channel.PHONE, "support"))
    given = result(s.intake.submit(Channel.EMAIL, "support", deadline=T0 + 60))

    assert mail.deadline == T0 + DAY
    assert call.deadline is None, "calls have no deadline"
    assert given.deadline == T0 + 60, "an explicit deadline wins over the rule"
    [stored] = [t for t in result(s.store.list_tasks()) if t.id == mail.id]
    assert stored.deadline == T0 + DAY


def test_no_rule_no_deadline(stack):
    mail = result(stack.intake.submit(Channel.EMAIL, "support"))
    assert mail.deadline is None


OFFICE = BusinessCalendar.from_spec(
    "office", "UTC", {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    holidays=["2026-03-09"],
)


@pytest.mark.parametrize(
    ("rule", "arrival", "due"),
    [
        # Friday 15:00 + 8 business hours: 2 h on Friday, Monday is a holiday, 6 h on Tuesday.
        ("sliding 8h", at(2026, 3, 6, 15), at(2026, 3, 10, 15)),
        # Tuesday 10:00 + 24 business hours = three 8-hour days: Friday 10:00.
        ("sliding 24h", at(2026, 3, 3, 10), at(2026, 3, 6, 10)),
        # Saturday: the clock starts on the next opening (Tuesday 09:00, Monday is a holiday).
        ("sliding 1h", at(2026, 3, 7, 11), at(2026, 3, 10, 10)),
        # By 12:00 on the next business day.
        ("scheduled 12:00 +1", at(2026, 3, 6, 15), at(2026, 3, 10, 12)),
    ],
)
def test_email_deadline_uses_the_queue_calendar(rule, arrival, due):
    s = build_stack(start=arrival)
    s.intake.calendars["office"] = OFFICE
    result(s.store.put_calendar(Calendar("office", "UTC", {}, ())))  # a queue's must exist
    s.put_queue(support_queue(deadline_rule=rule, calendar="office"))

    mail = result(s.intake.submit(Channel.EMAIL, "support"))

    assert mail.created_at == arrival
    assert mail.deadline == due, (datetime.fromtimestamp(mail.deadline, UTC), rule)


def test_email_ordering_uses_the_computed_deadline():
    """A mail due sooner is offered first even though it arrived later."""
    s = build_stack()
    s.put_queue(support_queue(deadline_rule="sliding 24h"))
    s.put_agent("ann", 8)
    late = result(s.intake.submit(Channel.EMAIL, "support"))
    s.clock.advance(10)
    urgent = result(s.intake.submit(Channel.EMAIL, "support", deadline=T0 + 3600))
    s.login("ann")
    assert s.last_offer("ann").task_id == urgent.id
    assert late.deadline == T0 + DAY


def test_a_call_names_its_caller_from_the_phone_identity(stack):
    """Whatever the edge (a PBX, the demo's robots), a call's task says who calls: the agent's
    page titles it "Call from <number>"; a caller the edge named is kept."""
    plain = result(stack.intake.submit(Channel.PHONE, "support", phone_identity("+32 2 555 01 00")))
    named = result(stack.intake.submit(Channel.PHONE, "support", phone_identity("+3225550101"),
                                       attributes={"caller": "+32 2 555 01 01"}))
    mail = result(stack.intake.submit(Channel.EMAIL, "support", email_identity("a@example.org")))
    anonymous = result(stack.intake.submit(Channel.PHONE, "support"))
    assert stack.router.tasks[plain.id].attributes["caller"] == "+3225550100"
    assert stack.router.tasks[named.id].attributes["caller"] == "+32 2 555 01 01"
    assert "caller" not in stack.router.tasks[mail.id].attributes
    assert "caller" not in stack.router.tasks[anonymous.id].attributes
