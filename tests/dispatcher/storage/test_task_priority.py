"""A task's priority across restarts, on SQLite and PostgreSQL: tasks stored by intake are served
in the same order by a router rebuilt from the database; and revision 0007 turns the priority
that older versions copied from the queue into the task (counted twice) into the task's own, so
a database written before the fix sorts as a new one does."""

from __future__ import annotations

import sqlalchemy as sa
from twisted.internet.defer import ensureDeferred

from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.storage import schema
from dispatcher.storage.engine import make_engine
from tests.dispatcher.runtime.running import sql_stack
from tests.dispatcher.service.stacks import T0, Stack


def configure(s: Stack) -> None:
    s.put_queue(Queue("vip", priority=5))
    s.put_queue(Queue("support"))
    s.wait(ensureDeferred(s.configuration.change_agent(Agent(
        "ann", queues={"vip", "support"}, capacity={"email": 1}, channels={Channel.EMAIL}))))


def served(s: Stack, n: int) -> list[str]:
    out: list[str] = []
    s.login("ann")
    for _ in range(n):
        offer = s.last_offer("ann")
        out.append(offer.task_id)
        s.wait(s.sessions.accept("ann", offer.id))
        s.wait(s.sessions.complete("ann", offer.task_id))
        s.advance(1)
    return out


def test_a_router_rebuilt_from_the_database_serves_in_the_same_order(sql_url: str) -> None:
    w1, s1 = sql_stack(sql_url, start=T0)
    try:
        configure(s1)
        ids = []
        for queue, priority in [("vip", None), ("support", 8), ("support", 4), ("vip", 3)]:
            task = s1.wait(s1.intake.submit(Channel.EMAIL, queue, priority=priority))
            ids.append(task.id)
            s1.advance(1)
        s1.settle()
        s1.assignment.stop()
        later = s1.clock.seconds() + 60
    finally:
        w1.close()
    w2, s2 = sql_stack(sql_url, start=later)
    try:
        s2.wait(s2.assignment.restore(s2.wait(s2.store.load_state())))
        s2.settle()
        vip, eight, four, vip_three = ids
        assert s2.router.tasks[vip].priority == 0
        # 8 (older), 3 + 5 = 8 (younger), 0 + 5, 4: the order a fresh intake gives.
        assert served(s2, 4) == [eight, vip_three, vip, four]
    finally:
        w2.close()


def _insert_task(conn: sa.Connection, task_id: str, queue: str, priority: int, state: str,
                 ) -> None:
    conn.execute(sa.text(
        "INSERT INTO tasks (id, channel, queue, customer_id, created_at, base_skills, priority,"
        " attributes, state, step, required_skills) VALUES (:id, 'email', :queue, NULL, :at,"
        " '{}', :priority, '{}', :state, 0, '{}')"),
        {"id": task_id, "queue": queue, "priority": priority, "state": state, "at": T0})


def test_0007_makes_the_copied_queue_priority_of_open_tasks_their_own(empty_url: str) -> None:
    schema.upgrade(empty_url, "0006")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            for name, priority in [("vip", 5), ("support", 0)]:
                conn.execute(sa.text(
                    "INSERT INTO queues (name, requirement, steps, mode, agent_choice, priority,"
                    " sl_target, sl_share, offer_timeout, wrap_up_seconds)"
                    " VALUES (:name, '{}', '[]', 'push', 'longest_idle', :priority, '{}', 0.8,"
                    " '{}', 30)"), {"name": name, "priority": priority})
            _insert_task(conn, "copied", "vip", 5, "queued")  # intake's copy: counted twice
            _insert_task(conn, "held", "vip", 5, "assigned")  # open too
            _insert_task(conn, "explicit", "vip", 8, "queued")  # given: stays 8 (+5)
            _insert_task(conn, "closed", "vip", 5, "completed")  # history stays as it was
            _insert_task(conn, "plain", "support", 0, "queued")  # queue priority 0: no change
        schema.upgrade(empty_url, "0007")
        with engine.connect() as conn:
            rows = dict(conn.execute(sa.text("SELECT id, priority FROM tasks")).all())
            assert rows == {"copied": 0, "held": 0, "explicit": 8, "closed": 5, "plain": 0}
            logged = conn.execute(sa.text(
                "SELECT task_id, kind, actor FROM task_events ORDER BY task_id")).all()
            assert logged == [("copied", "task.changed", "system"),
                              ("held", "task.changed", "system")]
        schema.downgrade(empty_url, "0006")
        with engine.connect() as conn:
            rows = dict(conn.execute(sa.text("SELECT id, priority FROM tasks")).all())
            assert rows == {"copied": 5, "held": 5, "explicit": 8, "closed": 5, "plain": 0}
    finally:
        engine.dispose()
