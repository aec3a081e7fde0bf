"""The text of `switchboard tasks show` (admin.task_views): a task found by id or
request number, its conversation (HTML shown as text, never its scripts) and its trail."""

from __future__ import annotations

from admin.task_views import format_task, show_task
from dispatcher.domain.tasks import Channel, Task
from dispatcher.service.mail import InboundMail, Mail, MailPolicy
from tests.dispatcher.service.stacks import build_stack, result, support_queue


def test_show_task_prints_the_conversation_and_the_trail() -> None:
    stack = build_stack()
    stack.put_queue(support_queue())
    stack.put_agent("ann", 5, capacity={"email": 3})
    mail = Mail(stack.assignment, stack.store, stack.clock, stack.intake)
    got = stack.wait(mail.receive(InboundMail(
        raw=b"raw", queue="support", from_address="alice@customer.org",
        envelope_from="alice@customer.org", subject="Printer on fire", message_id="a@c.org",
        html="<p>hi<script>alert(1)</script></p>")))

    text = result(show_task(stack.store, "SB-000001"))

    assert "request SB-000001" in text and "Conversation (2 messages)" in text
    assert "Subject: Printer on fire" in text and "| hi" in text
    assert "email.received" in text and "alert" not in text
    assert result(show_task(stack.store, got.task_id)) == text
    assert result(show_task(stack.store, "nope")) is None


def test_a_task_without_a_request_number_or_messages() -> None:
    task = Task(id="call-1", channel=Channel.PHONE, queue="support", customer_id=None,
                created_at=0.0)
    text = format_task(task, [], [], MailPolicy(request_prefix="REQ-"))
    assert text.startswith("Task call-1  request -\n")
    assert "channel phone  queue support  state queued" in text
    assert "Conversation (0 messages)" in text and "Trail (0 events)" in text


def test_the_trail_tells_each_offer_in_words_and_who_it_went_to() -> None:
    stack = build_stack()
    stack.put_queue(support_queue())
    stack.put_agent("ann", 8)
    stack.put_agent("bob", 8)
    stack.put_agent("dana", 2)  # below the queue's support 5
    for agent_id in ("ann", "bob", "dana"):
        stack.login(agent_id)
    mail = Mail(stack.assignment, stack.store, stack.clock, stack.intake)
    got = stack.wait(mail.receive(InboundMail(
        raw=b"raw", queue="support", from_address="alice@customer.org",
        envelope_from="alice@customer.org", subject="Hello", message_id="h@c.org",
        text="hi")))
    first = "ann" if stack.router.agents["ann"].offer_id else "bob"
    other = "bob" if first == "ann" else "ann"
    stack.wait(stack.sessions.reject(first, stack.router.agents[first].offer_id))

    text = result(show_task(stack.store, got.task_id))

    offered = [line for line in text.splitlines() if "task.offered" in line]
    assert f"system -> {first}" in offered[0] and f"system -> {other}" in offered[1]
    whys = [line.strip() for line in text.splitlines() if line.strip().startswith("why:")]
    assert whys[-1] == (f"why: offered to {other} (longest idle of 1 available out of 2 "
                        f"eligible); passed over: {first} declined it; dana: skill support "
                        "2 < 5")
    assert not any("{" in line for line in whys)  # words, not JSON
