"""A new e-mail task takes the one path of every new task, Intake's: drafted (queue checks,
skills, deadline rule), committed with its `task.created` event, then routed. Change a rule in
Intake and the e-mail channel follows with the others; Mail keeps no copy of it."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.errors import QueueDisabled, UnknownQueue
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel, Task, TaskState
from dispatcher.service.intake import Intake
from dispatcher.service.mail import InboundMail, Mail, Received
from tests.dispatcher.service.stacks import Stack, failure_of, result

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

    assert intake.steps == [("draft", got.task_id), ("commit", got.task_id),
                            ("route", got.task_id)]
    task = stack.router.tasks[got.task_id]
    assert task.state is TaskState.QUEUED  # in the router, after the commit
    assert task.customer_id == got.customer_id is not None
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
