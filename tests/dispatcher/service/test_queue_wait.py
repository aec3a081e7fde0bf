"""A waiting call's position and expected wait (dispatcher/service/queue_wait.py) on a real
Router: the router's order (priority before arrival), channel and queue apart, the speed of
answer learnt from `call.answered` events, None when nothing waits."""

from __future__ import annotations

from dispatcher.domain import events as ev
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import Outcome, Router
from dispatcher.domain.tasks import Channel, Task
from dispatcher.service.queue_wait import QueueWaits


def router() -> Router:
    r = Router()
    r.put_queue(Queue("support"), 0.0)
    r.put_queue(Queue("sales"), 0.0)
    return r


def call(r: Router, task_id: str, at: float, queue: str = "support", priority: int = 0,
         channel: Channel = Channel.PHONE) -> None:
    r.submit(Task(task_id, channel, queue, None, at, priority=priority), at)


def test_position_follows_the_routers_order():
    r = router()
    call(r, "a", 1.0)
    call(r, "b", 2.0)
    call(r, "c", 3.0)
    call(r, "urgent", 4.0, priority=50)
    call(r, "mail", 0.5, channel=Channel.EMAIL)  # another channel: not ahead of callers
    call(r, "other", 0.1, queue="sales")  # another queue
    w = QueueWaits(r)
    assert [w.position(t, 10.0).position for t in ("urgent", "a", "b", "c")] == [1, 2, 3, 4]
    assert w.position("other", 10.0).position == 1
    assert w.position("c", 10.0).expected_wait is None  # no call answered yet: no figure
    assert w.position("nope", 10.0) is None


def test_expected_wait_from_the_recent_speed_of_answer():
    r = router()
    call(r, "old1", 0.0)
    call(r, "old2", 0.0)
    w = QueueWaits(r)
    w.heard(Outcome(events=[ev.Event(ev.CALL_ANSWERED, 60.0, "old1", "x"),
                            ev.Event(ev.CALL_ANSWERED, 180.0, "old2", "y")]))
    assert w.speed_of_answer("support") == 120.0 and w.speed_of_answer("sales") is None
    r.abandon("old1", 190.0)  # (they left the queue; answered, in a real router)
    r.abandon("old2", 190.0)
    call(r, "first", 200.0)
    call(r, "second", 210.0)
    # one agent (none are members: counted as one): first waits asa - waited, second one
    # caller more
    assert w.position("first", 230.0).expected_wait == 120.0 - 30.0
    assert w.position("second", 230.0).expected_wait == 2 * 120.0 - 20.0
    assert w.position("first", 400.0).expected_wait == 0.0  # never negative
