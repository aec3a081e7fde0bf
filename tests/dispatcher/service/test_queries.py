"""Queries: live queue figures from the router, histories and task lists from the store."""

from __future__ import annotations

from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.intake import email_identity
from tests.dispatcher.service.stacks import T0, build_stack, result, support_queue


def figures_by_key(s, now):
    return {(f.queue, f.channel): f for f in s.queries.queue_figures(now)}


def test_queue_figures_count_waiting_tasks_longest_wait_and_available_agents():
    s = build_stack()
    s.put_queue(support_queue(deadline_rule="sliding 24h"))
    s.put_queue(Queue("sales", requirement={"sales": 1}))
    s.put_agent("ann", 8)  # support member, stays offline
    s.put_agent("sam", 0, queues=("sales",))
    s.put_agent("sue", 0, queues=("sales",))
    s.login("sam")
    s.login("sue")
    s.call()  # t1 at T0
    s.clock.advance(30)
    s.call()  # t2 at T0 + 30
    result(s.intake.submit(Channel.EMAIL, "support"))  # t3 at T0 + 30, due T0 + 30 + 24 h
    now = T0 + 100

    f = figures_by_key(s, now)

    assert set(f) == {(q, c.value) for q in ("sales", "support") for c in Channel}
    phone, email = f[("support", "phone")], f[("support", "email")]
    assert (phone.waiting, phone.longest_wait, phone.oldest_deadline) == (2, 100.0, None)
    assert (email.waiting, email.longest_wait, email.oldest_deadline) == (1, 70.0, T0 + 30 + 86400)
    assert (phone.members, phone.available) == (1, 0)
    sales = f[("sales", "phone")]
    assert (sales.waiting, sales.longest_wait, sales.members, sales.available) == (0, 0.0, 2, 2)
    assert f[("sales", "email")].available == 2


def test_available_agents_follow_presence_and_the_interruption_matrix():
    s = build_stack()
    s.put_queue(support_queue())
    s.put_agent("ann", 8)
    s.put_agent("bob", 8)
    s.login("ann")
    s.clock.advance(1)
    s.login("bob")
    now = s.clock.seconds()

    def available():
        f = figures_by_key(s, now)
        return f[("support", "phone")].available, f[("support", "email")].available

    assert available() == (2, 2)
    call = s.call()  # offered to ann: she can take nothing more while it is pending
    assert available() == (1, 1)
    result(s.sessions.accept("ann", s.last_offer("ann").id))
    assert available() == (1, 1)  # on a call: nothing else
    result(s.sessions.complete("ann", call.id))
    assert available() == (2, 2)
    result(s.sessions.set_status("bob", "break", reason="coffee"))
    assert available() == (1, 1)
    mail = result(s.intake.submit(Channel.EMAIL, "support"))
    result(s.sessions.accept("ann", s.last_offer("ann").id))
    assert s.router.tasks[mail.id].agent_id == "ann"
    assert available() == (1, 1)  # an e-mail may be interrupted by a call, or another mail
    assert s.queries.agent_presence() == {"ann": "available", "bob": "break"}
    s.login("bob")
    assert available() == (2, 2)


def test_customer_history_and_task_lists_come_from_the_store():
    s = build_stack()
    s.put_queue(support_queue())
    ann = email_identity("ann@example.org")
    first = result(s.intake.submit(Channel.EMAIL, "support", ann))
    s.clock.advance(60)
    second = result(s.intake.submit(Channel.PHONE, "support", ann))
    result(s.intake.submit(Channel.PHONE, "support"))

    history = result(s.queries.customer_history(first.customer_id))
    assert [t.id for t in history] == [second.id, first.id]  # newest first
    assert {t.channel for t in history} == {"email", "phone"}
    assert len(result(s.queries.tasks())) == 3
    assert len(result(s.queries.tasks(state="queued", queue="support"))) == 3
    assert result(s.queries.tasks(state="completed")) == []
    assert len(result(s.queries.tasks(limit=1))) == 1
