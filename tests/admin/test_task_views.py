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
