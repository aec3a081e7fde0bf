"""History: the customer card, the cross-channel timeline and the audited merge, on the
MemoryStore stack with a virtual clock."""

from __future__ import annotations

import pytest

from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.tasks import Channel
from dispatcher.service.history import (
    CUSTOMER_MERGED,
    PREVIEW_CHARS,
    History,
    UnknownCustomer,
    preview_of,
)
from dispatcher.service.intake import email_identity, phone_identity
from tests.dispatcher.service.stacks import T0, failure_of


@pytest.fixture
def history(stack) -> History:
    return History(stack.store, stack.assignment, limit=10)


def mail(stack, address="ann@example.org", **attributes):
    return stack.wait(stack.intake.submit(
        Channel.EMAIL, "support", identity=email_identity(address), customer_name="Ann",
        attributes=attributes))


def test_a_call_shows_answer_duration_agent_and_disposition(stack, history):
    stack.put_agent("a1", 6)
    stack.login("a1")
    call = stack.call(identity=phone_identity("+32 2 555 01 00"), customer_name="Ann")
    stack.advance(3)
    stack.wait(stack.sessions.accept("a1", stack.last_offer("a1").id))
    stack.advance(125)
    stack.wait(stack.sessions.wrap_up("a1", call.id))
    stack.advance(10)
    stack.wait(stack.sessions.complete("a1", call.id, "solved"))
    view = stack.wait(history.view(call.customer_id))
    (entry,) = view.timeline
    assert entry.channel == "phone" and entry.state == "completed"
    assert entry.agent_id == "a1" and entry.disposition == "solved"
    assert entry.answered_at == T0 + 3 and entry.duration == 125
    assert view.card.open_tasks == ()
    assert view.card.identities[0].value == "+3225550100"


def test_mails_show_subject_and_first_lines_newest_first_with_open_tasks(stack, history):
    first = mail(stack, subject="Invoice 12", text="Hello,\n\n\nmy invoice is wrong.\nline3\nline4")
    stack.advance(60)
    second = mail(stack, subject="Again", preview="Any news?")
    view = stack.wait(history.view(first.customer_id))
    assert [e.task_id for e in view.timeline] == [second.id, first.id]
    assert view.timeline[1].subject == "Invoice 12"
    assert view.timeline[1].preview == "Hello,\nmy invoice is wrong.\nline3"
    assert view.timeline[0].preview == "Any news?"
    assert view.card.open_tasks == (second.id, first.id)
    assert view.card.name == "Ann"


def test_previews_are_bounded():
    assert len(preview_of({"text": "x" * 5000})) == PREVIEW_CHARS
    assert preview_of({}) is None


def test_unknown_customer(stack, history):
    assert failure_of(history.view("nobody")).check(UnknownCustomer)


def test_merge_moves_everything_and_is_audited(stack, history):
    ann = mail(stack, "ann@example.org")
    other = stack.call(identity=phone_identity("+3225550100"))
    merged_id = other.customer_id
    assert ann.customer_id != merged_id
    stack.wait(history.merge(ann.customer_id, merged_id, "sup1"))
    view = stack.wait(history.view(ann.customer_id))
    assert {e.task_id for e in view.timeline} == {ann.id, other.id}
    assert {i.kind for i in view.card.identities} == {"email", "phone"}
    # The router's open task follows, so its next write keeps the survivor.
    assert stack.router.tasks[other.id].customer_id == ann.customer_id
    stack.advance(1000)  # escalation step: the task row is written again
    assert stack.wait(stack.store.get_customer(merged_id)).identities == ()
    assert stack.wait(stack.store.customer_records(merged_id)) == []
    audit = [e for e in stack.store.agent_events if e.kind == CUSTOMER_MERGED]
    assert audit[0].agent_id == "sup1" and audit[0].actor == "supervisor:sup1"
    assert CUSTOMER_MERGED in stack.kinds(other.id)
    # A new call from the merged number reaches the survivor.
    again = stack.call(identity=phone_identity("+3225550100"))
    assert again.customer_id == ann.customer_id


def test_merge_refusals(stack, history):
    ann = mail(stack)
    assert failure_of(history.merge(ann.customer_id, ann.customer_id, "s")).check(InvalidValue)
    assert failure_of(history.merge(ann.customer_id, "nobody", "s")).check(UnknownCustomer)


@pytest.mark.parametrize("role, serves, allowed", [
    ("supervisor", False, True), ("agent", True, True), ("agent", False, False),
    ("integration", True, False), ("integration", False, False), ("robot", True, False),
])
def test_who_may_read_a_customers_history(stack, history, role, serves, allowed):
    from dispatcher.domain.errors import Forbidden

    if serves:  # x1, signed in, is offered the customer's mail
        stack.put_agent("x1", 6)
        stack.login("x1")
    task = mail(stack)
    assert history.serves("x1", task.customer_id) is serves
    d = history.view_for(role, "x1", task.customer_id)
    if allowed:
        assert stack.wait(d).card.id == task.customer_id
    else:
        assert failure_of(d).check(Forbidden)
