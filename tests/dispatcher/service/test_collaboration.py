"""Collaboration (dispatcher.service.collaboration) on the MemoryStore with a virtual clock:
notes, consults whose answer threads back as an internal message, transfer with a note,
reminders that survive a restart with the deadline paused, redirects through the outbox."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from dispatcher.domain.errors import Forbidden, InvalidValue
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import TaskState
from dispatcher.service import collaboration as co
from dispatcher.service.collaboration import Collaboration
from dispatcher.service.mail import InboundMail, Mail
from dispatcher.storage.codification import MemoryCollaborationStore
from tests.dispatcher.service.stacks import Stack, failure_of, result

HOUR = 3600.0


@pytest.fixture
def mail(stack: Stack) -> Mail:
    stack.put_queue(Queue("support", deadline_rule="sliding 8h"))
    stack.put_queue(Queue("sales"))
    stack.put_agent("ann", 5, queues=("support", "sales"), capacity={"email": 3})
    stack.put_agent("bob", 5, queues=("support", "sales"), capacity={"email": 3})
    return Mail(stack.assignment, stack.store, stack.clock, stack.intake)


@pytest.fixture
def collab(stack: Stack, mail: Mail) -> Collaboration:
    tokens = iter(f"{n:032x}" for n in range(1, 100))
    out = Collaboration(stack.assignment, stack.store, MemoryCollaborationStore(stack.store),
                        stack.clock, stack.intake, stack.sessions, mail,
                        new_token=lambda: next(tokens))
    mail.intercept_with(out)
    return out


def inbound(subject: str = "Printer on fire", sender: str = "alice@customer.org",
            text: str = "help", **kw) -> InboundMail:
    kw.setdefault("message_id", f"{abs(hash((subject, sender, text)))}@c.org")
    return InboundMail(raw=f"Subject: {subject}\r\n\r\n{text}\r\n".encode(), queue="support",
                       from_address=sender, envelope_from=sender, subject=subject, text=text,
                       **kw)


def held_by_ann(stack: Stack, mail: Mail) -> str:
    got = stack.wait(mail.receive(inbound()))
    stack.login("ann")
    stack.wait(stack.sessions.accept("ann", stack.last_offer("ann").id))
    return got.task_id


def test_notes_are_internal_in_the_trail_and_only_for_the_holder(stack, mail, collab) -> None:
    task_id = held_by_ann(stack, mail)
    note = stack.wait(collab.note(task_id, "Customer is a reseller", "agent:ann", "ann"))
    assert note.id == 1 and note.author == "agent:ann"
    with pytest.raises(Forbidden):
        stack.wait(collab.note(task_id, "x", "agent:bob", "bob"))
    stack.wait(collab.note(task_id, "checked", "supervisor:sue"))  # supervisors: any task
    assert [n.text for n in result(collab.notes(task_id, "ann"))] == [
        "Customer is a reseller", "checked"]
    assert len(result(collab.notes(task_id, None))) == 2  # a supervisor: any task
    [first, _] = [e for e in stack.events(task_id) if e.kind == co.TASK_NOTE]
    assert first.data == {"text": "Customer is a reseller", "note": 1}
    assert [m.kind for m in result(stack.store.mail_messages(task_id))] == ["customer", "ack"]
    with pytest.raises(InvalidValue):
        stack.wait(collab.note(task_id, " ", "agent:ann", "ann"))


def test_a_consult_answer_threads_back_as_an_internal_message(stack, mail, collab) -> None:
    task_id = held_by_ann(stack, mail)
    consult = stack.wait(collab.consult(task_id, "ann", "Expert@Lab.example",
                                        "Is model X2 affected?"))
    out = [m for m in result(stack.store.mail_messages(task_id)) if m.kind == "consult"][0]
    sent = message_from_bytes(out.raw, policy=policy.default)
    assert sent["To"] == "expert@lab.example"
    assert f"[consult {consult.token}]" in sent["Subject"] and "[#SB-000001]" in sent["Subject"]
    assert "> help" in sent.get_content()
    [due] = [i for i in result(mail.due()) if i.message == out.id]  # the ack is due too
    assert due.rcpt == ("expert@lab.example",)

    # Someone else quoting the token is not the expert: an ordinary (linked) mail.
    other = stack.wait(mail.receive(inbound(f"Re: {sent['Subject']}", "mallory@x.org")))
    assert other.action == "linked"
    answer = stack.wait(mail.receive(inbound(f"Re: {sent['Subject']}", "expert@lab.example",
                                             "Yes, replace the fuse.",
                                             in_reply_to=out.message_id)))
    assert (answer.task_id, answer.action, answer.request) == (task_id, "consulted",
                                                               "SB-000001")
    msgs = result(stack.store.mail_messages(task_id))
    internal = [m for m in msgs if m.direction == "in" and m.kind == "consult"]
    assert internal[0].text == "Yes, replace the fuse." and internal[0].peer is None
    assert stack.router.tasks[task_id].agent_id == "ann"  # still with the agent
    assert co.CONSULT_ANSWERED in stack.kinds(task_id)
    assert result(collab.consults(task_id, "ann"))[0].answered_at == stack.clock.seconds()
    # A reply to the customer still goes to the customer, never to the expert.
    reply = stack.wait(mail.reply(task_id, "ann", "Replace the fuse."))
    assert reply.peer == "alice@customer.org"


def test_only_the_holder_consults_and_addresses_are_checked(stack, mail, collab) -> None:
    task_id = held_by_ann(stack, mail)
    with pytest.raises(Forbidden):
        stack.wait(collab.consult(task_id, "bob", "e@lab.example", "q"))
    with pytest.raises(InvalidValue):
        stack.wait(collab.consult(task_id, "ann", "not an address", "q"))
    with pytest.raises(InvalidValue):
        stack.wait(collab.consult(task_id, "ann", "e@lab.example\r\nBcc: x@y.z", "q"))


def test_transfer_with_a_note(stack, mail, collab) -> None:
    task_id = held_by_ann(stack, mail)
    stack.login("bob")
    stack.wait(collab.transfer(task_id, "ann", "needs a sales quote", to_queue="sales"))
    task = stack.router.tasks[task_id]
    assert task.queue == "sales" and task.agent_id != "ann"
    kinds = stack.kinds(task_id)
    assert kinds.index("task.transferred") < kinds.index(co.TASK_NOTE)
    note = [e for e in stack.events(task_id) if e.kind == co.TASK_NOTE][0]
    assert note.data["transfer"] == "queue sales" and note.data["text"] == "needs a sales quote"


def test_a_reminder_sets_the_task_aside_and_brings_it_back_with_the_deadline_paused(
        stack, mail, collab) -> None:
    task_id = held_by_ann(stack, mail)
    deadline = stack.router.tasks[task_id].deadline
    reminder = stack.wait(collab.remind(task_id, "ann", stack.clock.seconds() + 2 * HOUR,
                                        "waiting for the serial number"))
    stack.settle()
    assert task_id not in stack.router.tasks  # away from the agent
    completed = [e for e in stack.events(task_id) if e.kind == "task.completed"][0]
    assert completed.data["disposition"] == "reminder"
    stack.advance(2 * HOUR - 1)
    assert task_id not in stack.router.tasks
    stack.advance(1)
    task = stack.router.tasks[task_id]
    assert task.attributes["preferred_agent"] == "ann"
    assert task.deadline == pytest.approx(deadline + 2 * HOUR)  # always-open calendar
    assert stack.last_offer("ann").task_id == task_id  # back to the same agent first
    due = [e for e in stack.events(task_id) if e.kind == co.REMINDER_DUE][0]
    assert due.data["reminder"] == reminder.id and due.data["paused_seconds"] == 2 * HOUR
    assert result(collab.collab.pending_reminders()) == []


def test_reminders_survive_a_restart(stack, mail, collab) -> None:
    task_id = held_by_ann(stack, mail)
    stack.wait(collab.remind(task_id, "ann", stack.clock.seconds() + HOUR))
    collab.stop()  # the process goes away; the reminder is only in the store
    stack.advance(2 * HOUR)
    assert task_id not in stack.router.tasks
    again = Collaboration(stack.assignment, stack.store, collab.collab, stack.clock,
                          stack.intake, stack.sessions, mail)
    stack.wait(again.start())  # overdue: fires at once
    stack.advance(0)
    assert stack.router.tasks[task_id].state in (TaskState.QUEUED, TaskState.OFFERED)


def test_a_customer_reply_before_the_reminder_supersedes_it(stack, mail, collab) -> None:
    task_id = held_by_ann(stack, mail)
    stack.wait(collab.remind(task_id, "ann", stack.clock.seconds() + HOUR))
    stack.settle()
    stack.advance(60)
    back = stack.wait(mail.receive(inbound("Re: Printer on fire [#SB-000001]", text="serial",
                                           authenticated=True)))
    assert back.action == "reopened"
    stack.advance(HOUR)
    assert co.REMINDER_SUPERSEDED in stack.kinds(task_id)
    assert co.REMINDER_DUE not in stack.kinds(task_id)


def test_reminders_must_be_in_the_future(stack, mail, collab) -> None:
    task_id = held_by_ann(stack, mail)
    now = stack.clock.seconds()
    for due in (now - 1, now + 100 * 86_400):
        assert isinstance(failure_of(collab.remind(task_id, "ann", due)).value, InvalidValue)


def test_redirect_forwards_the_original_and_closes_the_task(stack, mail, collab) -> None:
    task_id = held_by_ann(stack, mail)
    out = stack.wait(collab.redirect(task_id, "ann", "billing@partner.example",
                                     "This is for our billing partner."))
    stack.settle()
    forwarded = message_from_bytes(out.raw, policy=policy.default)
    assert forwarded["To"] == "billing@partner.example"
    assert forwarded["Subject"] == "Fwd: Printer on fire"
    parts = list(forwarded.iter_attachments())
    assert parts and parts[0].get_content_type() == "message/rfc822"
    assert any(i.rcpt == ("billing@partner.example",) for i in result(mail.due()))
    trail = stack.events(task_id)
    assert [e.data["disposition"] for e in trail if e.kind == "task.completed"] == ["redirected"]
    redirected = [e for e in trail if e.kind == co.EMAIL_REDIRECTED][0]
    assert redirected.actor == "agent:ann" and redirected.data["to"] == "billing@partner.example"
    with pytest.raises(Exception):  # noqa: B017 - closed: nobody holds it any more
        stack.wait(collab.redirect(task_id, "ann", "x@y.example"))


def test_a_reminder_on_sqlite_survives_a_restart_of_the_whole_stack(tmp_path) -> None:
    """Set aside on one stack, the process goes away; a new stack on the same database (as at
    start: router rebuilt from the store) re-arms it and the task comes back."""
    from dispatcher.storage import schema
    from dispatcher.storage.codification import SqlCollaborationStore
    from tests.dispatcher.runtime.running import sql_stack

    url = f"sqlite:///{tmp_path / 'reminders.db'}"
    schema.upgrade(url)
    w, stack = sql_stack(url)
    try:
        stack.put_queue(Queue("support", deadline_rule="sliding 8h"))
        stack.put_agent("ann", 5, capacity={"email": 3})
        mail = Mail(stack.assignment, stack.store, stack.clock, stack.intake)
        first = Collaboration(stack.assignment, stack.store, SqlCollaborationStore(w.pool,
                              w.commit), stack.clock, stack.intake, stack.sessions, mail)
        task_id = held_by_ann(stack, mail)
        due = stack.clock.seconds() + HOUR
        stack.wait(first.remind(task_id, "ann", due, "serial number"))
        stack.settle()
        first.stop()
        stack.assignment.stop()
    finally:
        w.close()

    w, again = sql_stack(url, start=due + 60)
    try:
        state = again.wait(again.store.load_state())
        again.wait(again.assignment.restore(state))
        assert task_id not in again.router.tasks
        mail = Mail(again.assignment, again.store, again.clock, again.intake)
        second = Collaboration(again.assignment, again.store, SqlCollaborationStore(
            w.pool, w.commit), again.clock, again.intake, again.sessions, mail)
        again.wait(second.start())
        again.advance(0)  # overdue: fires at once
        again.wait(second.settled())
        again.settle()
        task = again.router.tasks[task_id]
        assert task.state is TaskState.QUEUED and task.attributes["preferred_agent"] == "ann"
        assert co.REMINDER_DUE in again.kinds(task_id)
        assert again.wait(second.collab.pending_reminders()) == []
        second.stop()
        again.assignment.stop()
    finally:
        w.close()


def test_the_service_refuses_notes_and_consults_to_an_agent_the_task_is_not_with(
        stack, mail, collab) -> None:
    """The rule lives in the service, whoever calls it (the console only translates)."""
    task_id = held_by_ann(stack, mail)
    stack.wait(collab.note(task_id, "Customer is a reseller", "agent:ann", "ann"))
    for read in (collab.notes, collab.consults):
        assert isinstance(failure_of(read(task_id, "bob")).value, Forbidden)
        assert isinstance(failure_of(read("no-such-task", "ann")).value, Forbidden)
    assert [n.text for n in result(collab.notes(task_id, "ann"))] == ["Customer is a reseller"]
