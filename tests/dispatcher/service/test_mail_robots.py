"""Robots' mail and the agent's replies in the e-mail use cases (dispatcher.service.mail), on
the MemoryStore with a virtual clock: an out-of-office is kept on its thread and never reopens
nor opens a task; a delivery report marks our message bounced and tells the listeners; "send me
no auto-replies" is honoured; a reply to all keeps the thread's Cc, signs, quotes, comes from
the queue's address and carries the agent's uploads, which are then dropped."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from dispatcher.domain.errors import InvalidValue
from dispatcher.service import mail as m
from dispatcher.service.mail import InboundMail, Mail, MailPolicy
from dispatcher.service.ports import DeliveryReport, DsnRecipient
from dispatcher.storage.uploads import MemoryUploads
from tests.dispatcher.service.stacks import Stack, failure_of, result

POLICY = MailPolicy(queue_from=(("support", "help@example.com"),),
                    signature="{agent_name}\nExample Support",
                    own_addresses=frozenset({"support@example.com", "help@example.com"}),
                    own_domains=frozenset({"example.com"}))


@pytest.fixture
def mail(stack: Stack) -> Mail:
    stack.put_agent("ann", 5, capacity={"email": 3}, name="Ann Agent")
    box = Mail(stack.assignment, stack.store, stack.clock, stack.intake, POLICY,
               uploads=MemoryUploads())
    box.news = []
    box.listen(box.news.append)
    return box


def inbound(subject: str = "Order 7 missing", sender: str = "alice@customer.org",
            **kw) -> InboundMail:
    kw.setdefault("message_id", f"{abs(hash((subject, sender, kw.get('text', ''))))}@c.org")
    kw.setdefault("envelope_from", sender)
    return InboundMail(raw=b"From: Alice Example <alice@customer.org>\r\n\r\n", queue="support",
                       from_address=sender, subject=subject, text=kw.pop("text", "help"), **kw)


def assigned(stack: Stack, mail: Mail, msg: InboundMail | None = None) -> str:
    got = stack.wait(mail.receive(msg or inbound()))
    stack.login("ann")
    stack.wait(stack.sessions.accept("ann", stack.last_offer("ann").id))
    return got.task_id


def messages(stack: Stack, task_id: str) -> list:
    return result(stack.store.mail_messages(task_id))


def test_an_out_of_office_on_a_completed_thread_is_kept_and_reopens_nothing(stack, mail):
    task_id = assigned(stack, mail)
    reply = stack.wait(mail.reply(task_id, "ann", "It left on Monday."))
    stack.wait(stack.sessions.complete("ann", task_id))
    stack.settle()
    got = stack.wait(mail.receive(inbound("Automatic reply: away", automatic=m.AUTO_REPLY,
                                          auto_generated=True,
                                          in_reply_to=reply.message_id)))
    assert (got.action, got.task_id) == (m.RECORDED, task_id)
    assert task_id not in stack.router.tasks  # not reopened, not routed
    assert [x.kind for x in messages(stack, task_id)][-1] == m.KIND_AUTO
    assert stack.kinds(task_id)[-1] == m.EMAIL_AUTOMATIC
    assert m.EMAIL_REOPENED not in stack.kinds(task_id)


def test_an_out_of_office_answering_nothing_of_ours_opens_no_task(stack, mail):
    got = stack.wait(mail.receive(inbound("Out of office", automatic=m.AUTO_REPLY,
                                          auto_generated=True)))
    assert (got.action, got.task_id) == (m.RECORDED, "")
    assert not stack.router.tasks
    assert [x.kind for x in messages(stack, "")] == [m.KIND_AUTO]


def test_robot_notifications_still_open_tasks_but_get_no_ack(stack, mail):
    got = stack.wait(mail.receive(inbound("Disk full on srv-3", automatic=m.AUTO_GENERATED,
                                          auto_generated=True)))
    assert got.action == "new" and got.acknowledged is False


def test_a_delivery_report_marks_our_reply_bounced_and_says_so(stack, mail):
    task_id = assigned(stack, mail)
    reply = stack.wait(mail.reply(task_id, "ann", "It left on Monday."))
    mail.news.clear()
    report = DeliveryReport(reply.message_id, (DsnRecipient(
        "alice@customer.org", "failed", "5.1.1", "smtp; 550 5.1.1 User unknown"),))
    got = stack.wait(mail.receive(inbound("Undelivered Mail", sender="MAILER-DAEMON@mx.org",
                                          envelope_from="", dsn=report)))
    assert (got.action, got.task_id) == (m.RECORDED, task_id)
    ours = next(x for x in messages(stack, task_id) if x.id == reply.id)
    assert ours.status == "bounced" and "User unknown" in ours.error
    assert stack.events(task_id)[-1].kind == m.EMAIL_BOUNCED
    assert stack.events(task_id)[-1].data["status"] == "5.1.1"
    assert [(n.message, n.status) for n in mail.news][:1] == [(reply.id, "bounced")]
    assert stack.router.tasks[task_id].state.value == "assigned"  # the agent keeps it


def test_a_delayed_report_is_recorded_and_changes_nothing(stack, mail):
    task_id = assigned(stack, mail)
    reply = stack.wait(mail.reply(task_id, "ann", "Soon."))
    report = DeliveryReport(reply.message_id, (DsnRecipient("alice@customer.org", "delayed",
                                                            "4.4.1"),))
    stack.wait(mail.receive(inbound("Delayed Mail", envelope_from="", dsn=report)))
    assert next(x for x in messages(stack, task_id) if x.id == reply.id).status == "queued"
    assert stack.kinds(task_id)[-1] == m.EMAIL_DELAYED


def test_a_report_about_mail_we_never_sent_is_kept_alone(stack, mail):
    got = stack.wait(mail.receive(inbound("Undelivered", envelope_from="", dsn=DeliveryReport(
        "nobody@nowhere", (DsnRecipient("x@y.org", "failed", "5.0.0"),)))))
    assert got.task_id == "" and not stack.router.tasks


def test_no_ack_when_the_sender_asks_for_no_auto_replies(stack, mail):
    got = stack.wait(mail.receive(inbound(suppress_auto=True)))
    assert got.acknowledged is False
    skipped = [e for e in stack.events(got.task_id) if e.kind == m.EMAIL_ACK_SKIPPED]
    assert "X-Auto-Response-Suppress" in skipped[0].data["reason"]


def test_the_ack_is_logged_and_marked_automatic(stack, mail):
    got = stack.wait(mail.receive(inbound()))
    queued = [e for e in stack.events(got.task_id) if e.kind == m.EMAIL_QUEUED]
    assert [e.data["kind"] for e in queued] == ["ack"]
    ack = message_from_bytes(messages(stack, got.task_id)[1].raw, policy=policy.default)
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"] == "All"
    assert ack["From"] == "Support <help@example.com>"


def test_a_reply_to_all_keeps_the_thread_cc_signs_quotes_and_attaches(stack, mail):
    first = inbound(text="Where is it?", to_addrs=("support@example.com",),
                    cc_addrs=("bob@customer.org", "desk@example.com", "ALICE@customer.org"))
    task_id = assigned(stack, mail, first)
    stack.wait(mail.receive(inbound("Re: Order 7 missing [#SB-000001]", text="Any news?",
                                    to_addrs=("help@example.com",),
                                    reply_to="alice.home@customer.org", authenticated=True)))
    upload = stack.wait(mail.upload("ann", "C:\\docs\\label.pdf", "application/pdf", b"%PDF"))
    assert upload.filename == "label.pdf"
    sent = stack.wait(mail.reply(task_id, "ann", "It left on Monday.", reply_all=True,
                                 uploads=(upload.id,)))
    out = message_from_bytes(sent.raw, policy=policy.default)
    assert out["To"] == "alice.home@customer.org"  # Reply-To wins over From
    # the thread's others in order of appearance; ours (addresses, domains) and dupes dropped
    assert out["Cc"] == "bob@customer.org, ALICE@customer.org"
    assert out["From"] == "Support <help@example.com>"
    assert out["Subject"] == "Re: Order 7 missing [#SB-000001]"
    text = out.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("It left on Monday.\n\n-- \nAnn Agent\nExample Support\n\nOn ")
    assert "wrote:\n> Any news?" in text
    assert "<blockquote" in out.get_body(("html",)).get_content()
    assert [(a.get_filename(), a.get_content()) for a in out.iter_attachments()] == [
        ("label.pdf", b"%PDF")]
    assert sent.text == "It left on Monday."  # what the agent wrote, for search and learning
    assert sent.cc_addrs == ("bob@customer.org", "ALICE@customer.org")
    assert not mail.uploads.files  # used, dropped
    queued = [e for e in stack.events(task_id) if e.kind == m.EMAIL_QUEUED][-1]
    assert queued.data["cc"] == ["bob@customer.org", "ALICE@customer.org"]
    assert ("queued", sent.id) in [(n.status, n.message) for n in mail.news]


def test_a_reply_without_reply_all_goes_to_the_sender_only(stack, mail):
    task_id = assigned(stack, mail, inbound(cc_addrs=("bob@customer.org",)))
    out = message_from_bytes(stack.wait(mail.reply(task_id, "ann", "Hi", quote=False)).raw,
                             policy=policy.default)
    assert out["Cc"] is None and out["To"] == "Alice Example <alice@customer.org>"
    assert "wrote:" not in out.get_body(("plain",)).get_content()
    assert out.get_body(("plain",)).get_content().startswith("Hi\r\n\r\n-- \r\nAnn Agent")


def test_uploads_of_another_agent_or_too_big_are_refused(stack, mail):
    task_id = assigned(stack, mail)
    theirs = stack.wait(mail.upload("bob", "x.txt", "text/plain", b"x"))
    failure = failure_of(mail.reply(task_id, "ann", "Hi", uploads=(theirs.id,)))
    assert failure.check(InvalidValue)
    assert failure_of(mail.upload("ann", "big.bin", "application/octet-stream",
                                  b"x" * (m.MAX_UPLOAD_BYTES + 1))).check(InvalidValue)
    assert failure_of(mail.upload("ann", "../", "text/plain", b"x")).check(InvalidValue)
    odd = stack.wait(mail.upload("ann", "a.txt", "text/html\r\nX-Evil: 1", b"x"))
    assert odd.content_type == "application/octet-stream"


def test_a_message_joining_a_held_task_is_news(stack, mail):
    task_id = assigned(stack, mail)
    mail.news.clear()
    stack.wait(mail.receive(inbound("Re: Order 7 missing [#SB-000001]", text="more",
                                    authenticated=True)))
    assert [(n.task_id, n.status) for n in mail.news] == [(task_id, None)]
