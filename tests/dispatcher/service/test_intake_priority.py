"""A queue's priority counts once: intake (`Intake.submit`, and the e-mail path `Mail.receive`)
keeps the task's own priority (0 unless given) and the router adds the queue's when it orders.
Before, intake copied the queue's priority into the task and the router added it again: a task
of a priority-5 queue sorted as 10 and overtook an explicit priority-8 task.

MemoryStore and a virtual clock (tests/dispatcher/service/stacks.py); the order is read from the
offers the real router makes to an agent who serves both queues."""

from __future__ import annotations

from twisted.internet.defer import ensureDeferred

from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.intake import email_identity
from dispatcher.service.mail import InboundMail, Mail
from tests.dispatcher.service.stacks import Stack, build_stack, result

EMAIL_ONLY = {"email": 1}  # one e-mail at a time: the offers come one by one, in order


def centre() -> Stack:
    """"vip" (priority 5) and "support" (priority 0); ann serves both, signed off."""
    s = build_stack()
    s.put_queue(Queue("vip", priority=5))
    s.put_queue(Queue("support"))
    s.wait(ensureDeferred(s.configuration.change_agent(Agent(
        "ann", queues={"vip", "support"}, capacity=EMAIL_ONLY, channels={Channel.EMAIL}))))
    return s


def served(s: Stack, n: int) -> list[str]:
    """The first `n` tasks ann is offered, taking and completing each one in turn."""
    out: list[str] = []
    s.login("ann")
    for _ in range(n):
        offer = s.last_offer("ann")
        out.append(offer.task_id)
        s.wait(s.sessions.accept("ann", offer.id))
        s.wait(s.sessions.complete("ann", offer.task_id))
        s.advance(1)
    return out


def submit(s: Stack, queue: str, subject: str, priority: int | None = None) -> str:
    task = s.wait(s.intake.submit(Channel.EMAIL, queue, identity=email_identity("c@x.org"),
                                  priority=priority, attributes={"subject": subject}))
    s.advance(1)
    return task.id


def test_intake_keeps_the_task_s_own_priority_and_the_router_adds_the_queue_s_once():
    s = centre()
    vip = submit(s, "vip", "oldest, queue priority 5")  # sorts as 5 (0 + 5), not 10
    eight = submit(s, "support", "explicit 8", priority=8)  # 8 + 0
    four = submit(s, "support", "explicit 4", priority=4)  # 4 + 0: below vip's 5
    vip_three = submit(s, "vip", "explicit 3 in vip", priority=3)  # 3 + 5 = 8, younger
    assert s.router.tasks[vip].priority == 0  # the task's own: nothing copied from the queue
    stored = {t.id: t.priority for t in s.wait(s.store.list_tasks())}
    assert stored[vip] == 0 and stored[eight] == 8
    # 8 (older) before 8 (younger), then 5, then 4.
    assert served(s, 4) == [eight, vip_three, vip, four]


def test_the_task_created_event_says_the_task_s_own_priority():
    s = centre()
    task_id = submit(s, "vip", "hello")
    created = [e for e in s.events(task_id) if e.kind == "task.created"][0]
    assert created.data["priority"] == 0


def test_e_mails_received_by_the_mail_service_count_their_queue_s_priority_once():
    s = centre()
    mail = Mail(s.assignment, s.store, s.clock, s.intake)

    def receive(queue: str, subject: str) -> str:
        got = s.wait(mail.receive(InboundMail(
            raw=b"raw", queue=queue, from_address="alice@customer.org", subject=subject,
            text="help", message_id=f"{subject.replace(' ', '-')}@customer.org",
            envelope_from="alice@customer.org")))
        s.advance(1)
        return got.task_id

    vip = receive("vip", "first into vip")  # 0 + 5
    eight = submit(s, "support", "explicit 8", priority=8)  # 8 + 0
    plain = receive("support", "plain support")  # 0 + 0
    assert s.router.tasks[vip].priority == 0
    assert result(s.store.get_task(vip)).priority == 0
    assert served(s, 3) == [eight, vip, plain]


def test_a_change_of_the_queue_s_priority_reorders_its_waiting_tasks():
    s = centre()
    vip = submit(s, "vip", "vip")  # 5
    eight = submit(s, "support", "explicit 8", priority=8)
    s.put_queue(Queue("vip", priority=10))  # 0 + 10 now: above 8
    assert served(s, 2) == [vip, eight]
