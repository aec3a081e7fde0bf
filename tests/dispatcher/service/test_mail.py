"""The e-mail use cases (dispatcher.service.mail) on the MemoryStore with a virtual clock:
request numbers, threading with the sender check, reopening, acknowledgements (RFC 3834 and
the per-sender period), agent replies with threading headers, retries and dead letters."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

import pytest
from twisted.internet.defer import Deferred

from admin.task_views import show_task
from dispatcher.domain.categories import Prequalified
from dispatcher.domain.tasks import TaskState
from dispatcher.service import mail as m
from dispatcher.service.mail import InboundMail, Mail, MailPolicy
from dispatcher.service.ports import OutboundMail
from tests.dispatcher.service.stacks import Stack, failure_of, result


@pytest.fixture
def mail(stack: Stack) -> Mail:
    stack.put_agent("ann", 5, capacity={"email": 3})
    return Mail(stack.assignment, stack.store, stack.clock, stack.intake)


def inbound(subject: str = "Printer on fire", sender: str = "alice@customer.org",
            **kw) -> InboundMail:
    kw.setdefault("message_id", f"{abs(hash((subject, sender, kw.get('text', ''))))}@c.org")
    kw.setdefault("envelope_from", sender)
    return InboundMail(raw=b"raw", queue="support", from_address=sender, subject=subject,
                       text=kw.pop("text", "help"), **kw)


def receive(stack: Stack, mail: Mail, msg: InboundMail) -> m.Received:
    return stack.wait(mail.receive(msg))


def test_a_new_message_opens_a_task_with_a_request_number_and_an_ack(stack, mail) -> None:
    got = receive(stack, mail, inbound())
    assert (got.action, got.request, got.acknowledged) == ("new", "SB-000001", True)
    task = stack.router.tasks[got.task_id]
    assert task.attributes["request"] == "SB-000001"
    assert task.deadline is None  # the support queue of the stack has no deadline rule
    msgs = result(stack.store.mail_messages(got.task_id))
    assert [(x.direction, x.kind, x.status) for x in msgs] == [
        ("in", "customer", "received"), ("out", "ack", "queued")]
    ack = message_from_bytes(msgs[1].raw, policy=policy.default)
    assert "[#SB-000001]" in ack["Subject"] and ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == f"<{msgs[0].message_id}>"
    kinds = stack.kinds(got.task_id)
    assert kinds[:3] == ["task.created", m.EMAIL_RECEIVED, m.EMAIL_QUEUED] or \
        set(kinds) >= {"task.created", m.EMAIL_RECEIVED, "task.queued"}
    assert receive(stack, mail, inbound("other")).request == "SB-000002"


def test_subject_tag_from_the_same_authenticated_customer_joins_the_conversation(
        stack, mail) -> None:
    first = receive(stack, mail, inbound())
    again = receive(stack, mail, inbound("Re: Printer on fire [#SB-000001]", text="still",
                                         authenticated=True))
    assert (again.action, again.task_id) == ("joined", first.task_id)
    assert len(result(stack.store.mail_messages(first.task_id))) == 3  # in, ack, in


def ours(stack, task_id: str) -> str:
    """The Message-ID of our first message on the task (its acknowledgement)."""
    return next(m.message_id for m in result(stack.store.mail_messages(task_id))
                if m.direction == "out")


def test_references_to_our_message_id_thread_too(stack, mail) -> None:
    first = receive(stack, mail, inbound(message_id="root@c.org"))
    again = receive(stack, mail, inbound("Re: x", references=("zz@x", ours(stack, first.task_id))))
    assert again.task_id == first.task_id and again.action == "joined"


def test_our_message_ids_carry_128_random_bits(stack, mail) -> None:
    first = receive(stack, mail, inbound())
    second = receive(stack, mail, inbound("another", sender="bob@customer.org"))
    ids = [ours(stack, first.task_id), ours(stack, second.task_id)]
    for i in ids:
        local, _, domain = i.partition("@")
        assert re.fullmatch(r"sb\.[0-9a-f]{32}", local) and domain == mail.policy.message_id_domain
    assert ids[0] != ids[1]


def test_the_request_number_alone_does_not_join_for_an_unauthenticated_sender(
        stack, mail) -> None:
    """A forged From: the customer's address, her request number: a new task linked to her
    thread, not a join (issue 13)."""
    first = receive(stack, mail, inbound())
    forged = receive(stack, mail, inbound("Re: Printer on fire [#SB-000001]", text="send it to"
                                          " me instead"))
    assert forged.action == "linked" and forged.linked_to == first.task_id
    assert forged.task_id != first.task_id
    [linked] = [e for e in stack.events(forged.task_id) if e.kind == m.EMAIL_LINKED]
    assert linked.data["reason"] == m.NOT_AUTHENTICATED
    task = stack.router.tasks[forged.task_id]
    assert task.attributes["link_reason"] == m.NOT_AUTHENTICATED  # the agent sees why
    shown = result(show_task(stack.store, forged.request))
    assert f"linked to task {first.task_id} (sender not authenticated)" in shown
    assert len(result(stack.store.mail_messages(first.task_id))) == 2  # in, ack: untouched


def test_references_to_the_customers_own_message_id_do_not_vouch(stack, mail) -> None:
    """Her own Message-IDs are no secret (everyone she wrote to has them): only ours count."""
    first = receive(stack, mail, inbound(message_id="root@c.org"))
    again = receive(stack, mail, inbound("Re: x", references=("root@c.org",)))
    assert again.action == "linked" and again.linked_to == first.task_id


def test_a_message_id_of_ours_on_another_thread_does_not_vouch(stack, mail) -> None:
    first = receive(stack, mail, inbound())
    other = receive(stack, mail, inbound("another", sender="bob@customer.org"))
    again = receive(stack, mail, inbound("Re: [#SB-000001]",
                                         references=(ours(stack, other.task_id),)))
    assert again.action == "linked" and again.linked_to == first.task_id


def test_a_reopening_needs_a_vouched_sender_too(stack, mail) -> None:
    first = receive(stack, mail, inbound())
    stack.login("ann")
    stack.wait(stack.sessions.accept("ann", stack.last_offer("ann").id))
    stack.wait(stack.sessions.complete("ann", first.task_id))
    stack.settle()
    forged = receive(stack, mail, inbound("Re: Printer on fire [#SB-000001]"))
    assert forged.action == "linked" and first.task_id not in stack.router.tasks
    assert m.EMAIL_REOPENED not in stack.kinds(first.task_id)
    again = receive(stack, mail, inbound("Re: Printer on fire",
                                         in_reply_to=ours(stack, first.task_id)))
    assert (again.action, again.task_id) == ("reopened", first.task_id)


def test_a_form_submission_never_names_a_thread(stack, mail) -> None:
    first = receive(stack, mail, inbound())
    form = Prequalified({"email": "alice@customer.org"})
    got = receive(stack, mail, inbound("Re: [#SB-000001]", form=form, authenticated=True,
                                       references=(ours(stack, first.task_id),)))
    assert got.action == "new" and got.linked_to is None and got.request == "SB-000002"


def test_another_sender_opens_a_new_task_linked_to_the_old_one(stack, mail) -> None:
    first = receive(stack, mail, inbound())
    other = receive(stack, mail, inbound("Re: [#SB-000001]", sender="mallory@evil.org"))
    assert other.action == "linked" and other.task_id != first.task_id
    assert other.linked_to == first.task_id
    assert m.EMAIL_LINKED in stack.kinds(other.task_id)


def test_a_reply_to_a_completed_task_reopens_it_within_the_window(stack, mail) -> None:
    first = receive(stack, mail, inbound())
    stack.login("ann")
    offer = stack.last_offer("ann")
    stack.wait(stack.sessions.accept("ann", offer.id))
    stack.wait(stack.sessions.complete("ann", first.task_id))
    stack.settle()
    assert first.task_id not in stack.router.tasks
    stack.advance(3600)
    again = receive(stack, mail, inbound("Re: Printer on fire [#SB-000001]", authenticated=True))
    assert (again.action, again.task_id) == ("reopened", first.task_id)
    task = stack.router.tasks[first.task_id]
    assert task.is_open and task.attributes["preferred_agent"] == "ann"
    assert m.EMAIL_REOPENED in stack.kinds(first.task_id)


def test_after_the_window_a_reply_opens_a_new_linked_task(stack, mail) -> None:
    first = receive(stack, mail, inbound())
    stack.wait(stack.sessions.cancel(first.task_id, "spam", "supervisor:x"))
    again = receive(stack, mail, inbound("Re: [#SB-000001]"))
    assert again.action == "linked" and again.linked_to == first.task_id


@pytest.mark.parametrize("kw", [
    {"auto_generated": True}, {"envelope_from": ""},
])
def test_no_ack_to_automatic_mail_or_the_null_sender(stack, mail, kw) -> None:
    got = receive(stack, mail, inbound(**kw))
    assert got.acknowledged is False
    assert m.EMAIL_ACK_SKIPPED in stack.kinds(got.task_id)


def test_two_mails_on_one_store_never_give_the_same_number(stack, mail) -> None:
    # Another process on the same database (the CLI, a second node): a second Mail, its own
    # router and intake, the same store. Numbers come from the store, not from either process.
    other = Mail(stack.assignment, stack.store, stack.clock, stack.intake)
    got = [receive(stack, mail if n % 2 else other, inbound(f"subject {n}", f"c{n}@c.org"))
           for n in range(6)]
    assert [g.request for g in got] == [f"SB-00000{n}" for n in range(1, 7)]
    for g in got:  # the tag, the attribute and the acknowledgement name the store's number
        task = result(stack.store.find_mail_task(task_id=g.task_id))
        assert task.attributes["request"] == g.request
        assert task.attributes["request_number"] == int(g.request[3:])
        ack = result(stack.store.mail_messages(g.task_id))[-1]
        assert ack.kind == "ack" and f"[#{g.request}]" in ack.subject


def test_a_failed_commit_fails_its_message_and_takes_no_number(stack, mail) -> None:
    store_create = stack.store.create_mail_task

    def down(*args, **kw) -> Deferred:
        d: Deferred = Deferred()
        d.errback(RuntimeError("database down"))
        return d

    stack.store.create_mail_task = down
    assert isinstance(failure_of(mail.receive(inbound("one"))).value, RuntimeError)
    stack.store.create_mail_task = store_create
    again = receive(stack, mail, inbound("one"))  # the sender's retry
    assert again.request == "SB-000001"
    assert again.acknowledged, "the first try's acknowledgement was never sent"
    assert [x.kind for x in result(stack.store.mail_messages(again.task_id))] == [
        "customer", "ack"]


def test_at_most_one_ack_per_sender_per_period(stack, mail) -> None:
    assert receive(stack, mail, inbound("a")).acknowledged
    assert not receive(stack, mail, inbound("b")).acknowledged
    stack.advance(mail.policy.ack_period + 1)
    assert receive(stack, mail, inbound("c")).acknowledged


def test_a_sender_acknowledged_before_a_restart_is_not_acknowledged_again(stack, mail) -> None:
    """The acknowledgement another process made (this one before a restart, another node) is
    read by the transaction that stores the new task: within the period none again, with the
    reason in the trail; the sender is left to the store for the next mail; past the period
    the sender is acknowledged."""
    assert receive(stack, mail, inbound("a")).acknowledged
    restarted = Mail(stack.assignment, stack.store, stack.clock, stack.intake)
    got = receive(stack, restarted, inbound("b"))
    assert not got.acknowledged
    assert [e.data["reason"] for e in stack.events(got.task_id)
            if e.kind == m.EMAIL_ACK_SKIPPED] == [m.ACKED]
    assert [x.kind for x in result(stack.store.mail_messages(got.task_id))] == ["customer"]
    assert "alice@customer.org" not in restarted._acked
    assert not receive(stack, restarted, inbound("c")).acknowledged
    stack.advance(mail.policy.ack_period + 1)
    got = receive(stack, restarted, inbound("d"))
    assert got.acknowledged
    assert [x.kind for x in result(stack.store.mail_messages(got.task_id))] == [
        "customer", "ack"]


def test_the_senders_acknowledged_are_remembered_for_the_period_only(stack, mail,
                                                                     monkeypatch) -> None:
    """Memory: the senders acknowledged within the period, not every sender ever (a process
    runs for weeks): when the map reaches its limit those past the period go; past the period
    the store answers, as for a new process."""
    monkeypatch.setattr(m, "ACKED_KEPT", 4)
    mail._acked_limit = 4
    for i in range(50):
        assert receive(stack, mail, inbound(f"n{i}", f"s{i}@c.org")).acknowledged
        stack.advance(mail.policy.ack_period / 10)
        assert len(mail._acked) <= 2 * 11  # twice the period's senders at most
    assert not receive(stack, mail, inbound("again", "s49@c.org")).acknowledged
    assert receive(stack, mail, inbound("again", "s0@c.org")).acknowledged


def test_acks_are_configured_per_queue(stack, mail) -> None:
    mail.configure(MailPolicy(ack_queues=frozenset({"sales"})))
    assert not receive(stack, mail, inbound()).acknowledged


def test_an_agent_reply_threads_and_cannot_inject_headers(stack, mail) -> None:
    got = receive(stack, mail, inbound(message_id="q1@c.org", references=("q0@c.org",)))
    out = stack.wait(mail.reply(got.task_id, "ann", "Fixed.\r\nBcc: evil@x.org"))
    parsed = message_from_bytes(out.raw, policy=policy.default)
    assert parsed["Subject"] == "Re: Printer on fire [#SB-000001]"
    assert parsed["In-Reply-To"] == "<q1@c.org>"
    assert parsed["References"] == "<q0@c.org> <q1@c.org>"
    assert parsed["To"] == "alice@customer.org" and parsed["Bcc"] is None
    trail = stack.events(got.task_id)
    queued = [e for e in trail if e.kind == m.EMAIL_QUEUED and e.data["kind"] == "reply"]
    assert queued and queued[0].actor == "agent:ann"


def test_deliveries_retry_on_4xx_and_die_on_5xx(stack, mail) -> None:
    got = receive(stack, mail, inbound())
    [item] = result(mail.due())
    assert isinstance(item, OutboundMail) and item.rcpt == ("alice@customer.org",)
    stack.wait(mail.failed(item, 451, "try later"))
    assert result(mail.due()) == []
    stack.advance(mail.policy.retry_base)
    [item] = result(mail.due())
    assert item.attempts == 1
    stack.wait(mail.failed(item, 550, "no such user"))
    stack.advance(10 * mail.policy.retry_max)
    assert result(mail.due()) == []
    [ack] = [x for x in result(stack.store.mail_messages(got.task_id)) if x.kind == "ack"]
    assert (ack.status, ack.error) == ("dead", "no such user")
    kinds = stack.kinds(got.task_id)
    assert m.EMAIL_RETRY in kinds and m.EMAIL_DEAD in kinds


def test_sent_is_recorded(stack, mail) -> None:
    got = receive(stack, mail, inbound())
    [item] = result(mail.due())
    stack.wait(mail.sent(item, "250 ok"))
    [ack] = [x for x in result(stack.store.mail_messages(got.task_id)) if x.kind == "ack"]
    assert ack.status == "sent" and m.EMAIL_SENT in stack.kinds(got.task_id)


def test_conversation_sanitises_html(stack, mail) -> None:
    got = receive(stack, mail, inbound(html='<a href="javascript:x()" onclick="y()">z</a>'))
    [first, _] = result(mail.conversation(got.task_id))
    assert "javascript" not in first.html and "onclick" not in first.html


def test_states_are_untouched_by_joining(stack, mail) -> None:
    first = receive(stack, mail, inbound())
    receive(stack, mail, inbound("[#SB-000001]"))
    assert stack.router.tasks[first.task_id].state is TaskState.QUEUED


def test_a_reply_goes_back_to_the_agent_who_handled_it_until_stickiness_ends(stack, mail) -> None:
    stack.put_agent("bob", 5, capacity={"email": 3})
    first = receive(stack, mail, inbound())
    stack.login("ann")
    stack.wait(stack.sessions.accept("ann", stack.last_offer("ann").id))
    stack.advance(10)
    stack.login("bob")  # idle from now on
    stack.advance(10)
    stack.wait(stack.sessions.complete("ann", first.task_id))  # ann idle from now: shorter
    stack.settle()
    stack.advance(3600)

    again = receive(stack, mail, inbound("Re: Printer on fire [#SB-000001]", text="again",
                                         authenticated=True))

    assert again.action == "reopened"
    offer = stack.last_offer("ann")
    assert offer.task_id == first.task_id  # not bob, though bob has idled longer
    assert not [o for o in stack.offers_made() if o.agent_id == "bob"]
    [offered] = [e for e in stack.events(first.task_id) if e.kind == "task.offered"][-1:]
    assert offered.data["explanation"]["rule"] == "sticky"
    stack.wait(stack.sessions.accept("ann", offer.id))
    stack.wait(stack.sessions.complete("ann", first.task_id))
    stack.wait(stack.sessions.logout("ann"))
    stack.settle()

    # ann is away: the next reply waits for her, and for her only, until stickiness ends.
    stack.advance(60)
    receive(stack, mail, inbound("Re: Printer on fire [#SB-000001]", text="and again",
                                 authenticated=True))
    assert stack.router.reserved_for(first.task_id) == "ann"
    stack.advance(mail.policy.sticky_seconds - 1)
    assert not [o for o in stack.offers_made() if o.agent_id == "bob"]
    stack.advance(1)
    assert stack.last_offer("bob").task_id == first.task_id
    assert stack.router.tasks[first.task_id].attributes["preferred_agent"] == "ann"
