"""A new e-mail task takes the one path of every new task, Intake's: drafted (queue checks,
skills, deadline rule), routed, and committed with its `task.created` event and its routing in
one transaction before anyone hears of it (unless the automatic mode may answer it: committed,
then routed if it did not). Change a rule in
Intake and the e-mail channel follows with the others; Mail keeps no copy of it."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from dispatcher.domain import events as ev
from dispatcher.domain.errors import QueueDisabled, UnknownQueue
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel, SharedSkills, Task, TaskState
from dispatcher.service.intake import Intake
from dispatcher.service.mail import InboundMail, Mail, Received
from tests.dispatcher.service.stacks import (
    Stack,
    build_stack,
    failure_of,
    held_stack,
    result,
    support_queue,
)
from tests.dispatcher.storage.wiring import SQL_BACKENDS, url_for, wire

HOUR = 3600.0


class Recording(Intake):
    """An Intake with one rule changed (every e-mail task is due in one hour, whatever its
    queue says) that records what it drafts, commits and routes."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.steps: list[tuple[str, str]] = []

    def draft(self, channel, queue_name, skills=None, priority=None, deadline=None,
              attributes=None, task_id=None) -> Task:
        if Channel(channel) is Channel.EMAIL and deadline is None:
            deadline = self.clock.seconds() + HOUR
        task = super().draft(channel, queue_name, skills, priority, deadline, attributes,
                             task_id)
        self.steps.append(("draft", task.id))
        return task

    def commit(self, task, identity, *args: Any, **kw: Any):
        self.steps.append(("commit", task.id))
        return super().commit(task, identity, *args, **kw)

    def commit_routed(self, task, identity, *args: Any, **kw: Any):
        self.steps.append(("commit_routed", task.id))
        return super().commit_routed(task, identity, *args, **kw)

    def route(self, task: Task) -> None:
        self.steps.append(("route", task.id))
        super().route(task)


@pytest.fixture
def intake(stack: Stack) -> Recording:
    stack.put_queue(Queue("billing", deadline_rule="sliding 8h"))
    return Recording(stack.assignment, stack.store, stack.clock, new_id=iter(
        f"t{n}" for n in range(1, 100)).__next__)


@pytest.fixture
def mail(stack: Stack, intake: Recording) -> Mail:
    return Mail(stack.assignment, stack.store, stack.clock, intake)


def inbound(queue: str = "billing", subject: str = "Invoice") -> InboundMail:
    return InboundMail(raw=b"raw", queue=queue, from_address="alice@customer.org",
                       envelope_from="alice@customer.org", subject=subject, text="help",
                       message_id=f"{subject}@customer.org")


def test_a_mail_task_is_drafted_committed_and_routed_by_intake(stack, intake, mail) -> None:
    got: Received = stack.wait(mail.receive(inbound()))

    assert intake.steps == [("draft", got.task_id), ("commit_routed", got.task_id)]
    task = stack.router.tasks[got.task_id]
    assert task.state is TaskState.QUEUED  # in the router, with the commit
    assert task.customer_id == got.customer_id is not None
    assert task.attributes["request"] == got.request  # given by the store in the commit
    assert task.base_skills == {}  # the billing queue's requirement, from Intake's draft
    created = stack.events(got.task_id)[0]
    assert created.kind == ev.TASK_CREATED and created.data["queue"] == "billing"


def test_a_changed_deadline_rule_in_intake_reaches_both_channels(stack, intake, mail) -> None:
    t0 = stack.clock.seconds()
    by_mail = stack.wait(mail.receive(inbound()))
    by_api = result(intake.submit(Channel.EMAIL, "billing"))

    assert stack.router.tasks[by_mail.task_id].deadline == t0 + HOUR  # not the queue's 8 h
    assert by_api.deadline == t0 + HOUR
    created = stack.events(by_mail.task_id)[0]
    assert created.data["deadline"] == t0 + HOUR


@pytest.mark.parametrize(("queue", "error"), [("nope", UnknownQueue), ("closed", QueueDisabled)])
def test_intake_refuses_a_mail_for_a_queue_that_takes_no_work(stack, mail, queue, error) -> None:
    stack.put_queue(Queue("closed", disabled=True))
    f = failure_of(mail.receive(inbound(queue)))
    assert f.check(error)
    assert result(stack.store.list_tasks()) == []


def test_what_mail_calls_out_to_is_registered_once(stack, mail) -> None:
    class Answers:
        def may_take(self, task) -> bool:
            return True

        def automatic(self, task, inbound) -> bool:
            return True  # takes every new task: none is routed

    answers = Answers()
    mail.answer_with(answers)
    mail.answer_with(answers)  # the same one again: harmless
    with pytest.raises(ValueError, match="already"):
        mail.answer_with(Answers())
    got = stack.wait(mail.receive(inbound()))
    assert got.task_id not in stack.router.tasks  # taken after the commit, not routed
    assert [t.id for t in result(stack.store.list_tasks())] == [got.task_id]


def test_a_new_mail_is_offered_after_one_transaction_that_holds_its_routing() -> None:
    store, s = held_stack("ann")
    mail = Mail(s.assignment, s.store, s.clock, s.intake)
    heard = len(s.heard)

    d = mail.receive(inbound("support"))

    assert not d.called, "250 before the commit"
    [task] = s.router.tasks.values()
    assert task.state is TaskState.OFFERED  # routed in memory
    assert len(s.heard) == heard, "the offer was announced before its commit"
    assert store.calls == ["create_mail_task"], "one transaction: the mail and its routing"
    [row] = result(store.inner.list_tasks())  # what the transaction holds
    assert (row.state, row.agent_id) == ("offered", "ann")
    assert row.attributes["request"] == "SB-000001"
    kinds = [e.kind for e in result(store.inner.task_events(task.id))]
    assert kinds[0] == ev.TASK_CREATED and kinds[-2:] == [ev.TASK_QUEUED, ev.TASK_OFFERED]
    assert "request" not in task.attributes  # the number is the commit's

    store.release()

    got: Received = result(d)
    assert got.task_id == task.id and got.request == "SB-000001"
    assert task.attributes["request"] == "SB-000001"  # before the offer is told
    assert task.customer_id == got.customer_id is not None
    assert store.calls == ["create_mail_task"], "the task's row was written once"
    assert s.last_offer("ann").task_id == task.id


def test_a_new_mail_whose_transaction_fails_is_let_go_and_its_agent_served_again() -> None:
    store, s = held_stack("ann")
    mail = Mail(s.assignment, s.store, s.clock, s.intake)
    first = mail.receive(inbound("support", "First"))
    [offered] = s.router.tasks
    second = mail.receive(inbound("support", "Second"))

    store.fail_first(RuntimeError("database went away"))

    assert failure_of(first).check(RuntimeError)
    assert offered not in s.router.tasks
    store.release()  # the second mail's transaction, then its offer to ann
    got = result(second)
    assert s.router.tasks[got.task_id].state is TaskState.OFFERED
    assert [o.task_id for o in s.offers_made()] == [got.task_id]  # nobody heard of the first


def test_a_mail_the_automatic_mode_may_take_is_committed_then_routed(stack, intake,
                                                                    mail) -> None:
    class Answers:
        def may_take(self, task) -> bool:
            return True  # an automatic rule for its queue

        def automatic(self, task, inbound) -> bool:
            return False  # but it left this one to the agents

    mail.answer_with(Answers())
    got = stack.wait(mail.receive(inbound()))

    assert intake.steps == [("draft", got.task_id), ("commit", got.task_id),
                            ("route", got.task_id)]
    assert stack.router.tasks[got.task_id].attributes["request"] == got.request


def sql_stack(request, tmp_path, backend: str) -> tuple[Any, Stack, Mail]:
    """The stack on a fresh SQL database (wired as `serve` wires its store), the support
    queue, ann (not signed in), and the e-mail channel's use cases."""
    from dispatcher.storage import schema

    url = (f"sqlite:///{tmp_path}/mail.db" if backend == "sqlite"
           else url_for(backend, request))
    schema.upgrade(url)
    w = wire(url)
    request.addfinalizer(w.close)
    s = build_stack(w.store, wait=w.wait)
    s.put_queue(support_queue())
    s.put_agent("ann", 8)
    return w, s, Mail(s.assignment, s.store, s.clock, s.intake)


def stored_row(w: Any, task_id: str) -> Any:
    from dispatcher.storage import tables as tb

    with w.engine.connect() as conn:
        return conn.execute(sa.select(tb.tasks).where(tb.tasks.c.id == task_id)).one()


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_on_sql_a_new_mail_is_stored_as_routed_and_its_accept_sends_hot_columns(
        request, tmp_path, backend) -> None:
    w, s, mail = sql_stack(request, tmp_path, backend)
    s.wait(s.sessions.login("ann"))

    got: Received = s.wait(mail.receive(inbound("support")))

    row = stored_row(w, got.task_id)
    assert (row.state, row.agent_id) == ("offered", "ann")
    assert not s.router.tasks[got.task_id].packed  # offered: its offer reads them at once
    assert row.attributes["request"] == got.request == s.router.tasks[got.task_id].attributes[
        "request"]
    kinds = [e.kind for e in s.wait(w.store.task_events(got.task_id))]
    assert kinds[0] == ev.TASK_CREATED and kinds[-2:] == [ev.TASK_QUEUED, ev.TASK_OFFERED]
    assert got.task_id in w.store._cold_sent  # its next change sends only the hot columns
    s.wait(s.sessions.accept("ann", s.last_offer("ann").id))
    row = stored_row(w, got.task_id)
    assert (row.state, row.agent_id, row.customer_id) == ("assigned", "ann", got.customer_id)


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_on_sql_a_new_mail_that_waits_is_kept_as_a_restore_would_load_it(
        request, tmp_path, backend) -> None:
    """Memory: a queue may hold many waiting e-mails. The router keeps one as a restart would
    load it (attributes packed as the JSON of its row, skills maps shared); its offer, once an
    agent comes, reads the stored values."""
    w, s, mail = sql_stack(request, tmp_path, backend)

    got: Received = s.wait(mail.receive(inbound("support")))

    task = s.router.tasks[got.task_id]
    assert task.state is TaskState.QUEUED and task.packed
    assert type(task.base_skills) is SharedSkills and task.required_skills is task.base_skills
    row = stored_row(w, got.task_id)
    assert task.attributes == row.attributes and row.attributes["request"] == got.request
    s.wait(s.sessions.login("ann"))
    offer = s.last_offer("ann")
    assert offer.task_id == got.task_id and task.attributes["subject"] == "Invoice"
    s.wait(s.sessions.accept("ann", offer.id))
    row = stored_row(w, got.task_id)
    assert (row.state, row.agent_id, row.attributes["request"]) == ("assigned", "ann",
                                                                   got.request)
