"""What `SqlTasks.record` (dispatcher/storage/tasks.py) writes of a task, on SQLite and
PostgreSQL: the whole row, or only the columns routing changes when the others are as last sent
for a task in hand; what is read back always equals the task."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dispatcher.domain import events as ev
from dispatcher.domain.events import Event
from dispatcher.domain.tasks import Channel, Task, TaskState
from dispatcher.service.ports import Changes, Identity
from dispatcher.storage import rows as r
from dispatcher.storage import tables as t
from dispatcher.storage.bulk import WRITE_ONCE
from dispatcher.storage.tasks import ChangeRows, thd_record_many
from tests.dispatcher.storage.wiring import (
    Wiring,
    every_driver_url,  # noqa: F401 - both drivers
)

T0 = 1_700_000_000.0


def new_task(wiring: Wiring, task_id: str = "t1") -> Task:
    task = Task(id=task_id, channel=Channel.EMAIL, queue="support", customer_id=None,
                created_at=T0, base_skills={"french": 3}, required_skills={"french": 3},
                attributes={"subject": "Bonjour", "spam": {"scored": False}})
    events = [Event(ev.TASK_CREATED, T0, task_id, data={"channel": "email"})]
    task.customer_id = wiring.wait(wiring.store.create_task(
        task, Identity("email", "alice@example.org"), "Alice", events))
    return task


def move(wiring: Wiring, task: Task, state: TaskState, at: float, **changes) -> None:
    task.state, task.updated_at = state, at
    for name, value in changes.items():
        setattr(task, name, value)
    wiring.wait(wiring.store.record(Changes(
        tasks=[task], events=[Event("task.test", at, task.id, task.agent_id, data={})])))


def stored(wiring: Wiring, task_id: str) -> dict:
    """The task's stored row, the columns a change writes (`task_row`'s: not the preview)."""
    columns = [c for c in t.tasks.columns if c.name not in WRITE_ONCE]
    with wiring.engine.connect() as conn:
        row = conn.execute(sa.select(*columns).where(t.tasks.c.id == task_id)).one()
    return dict(row._mapping)


def set_aside(wiring: Wiring, task_id: str, attributes: dict) -> None:
    """Another writer changes the stored attributes (what a slim row does not overwrite)."""
    with wiring.engine.begin() as conn:
        conn.execute(t.tasks.update().where(t.tasks.c.id == task_id)
                     .values(attributes=attributes))


def test_a_routed_task_reads_back_as_it_is_at_every_step(wiring: Wiring) -> None:
    task = new_task(wiring)
    move(wiring, task, TaskState.OFFERED, T0 + 1, agent_id="a1", offer_id="o1",
         offer_expires_at=T0 + 61)
    assert stored(wiring, "t1") == r.task_row(task)
    move(wiring, task, TaskState.ASSIGNED, T0 + 2, offer_id=None, offer_expires_at=None)
    assert stored(wiring, "t1") == r.task_row(task)
    task.attributes["wrap_up"] = {"until": T0 + 60, "limit": T0 + 600}  # changed in place
    move(wiring, task, TaskState.WRAP_UP, T0 + 3)
    assert stored(wiring, "t1") == r.task_row(task)
    move(wiring, task, TaskState.COMPLETED, T0 + 4)
    assert stored(wiring, "t1") == r.task_row(task)


def test_a_task_in_hand_is_sent_by_its_hot_columns_while_the_others_stay(wiring: Wiring) -> None:
    task = new_task(wiring)
    move(wiring, task, TaskState.OFFERED, T0 + 1, agent_id="a1", offer_id="o1")
    set_aside(wiring, "t1", {"written": "elsewhere"})
    move(wiring, task, TaskState.ASSIGNED, T0 + 2, offer_id=None)
    row = stored(wiring, "t1")
    assert row["attributes"] == {"written": "elsewhere"}  # not sent: unchanged since the offer
    assert row == {**r.task_row(task), "attributes": {"written": "elsewhere"}}
    task.priority = 4  # a cold column changed: the whole row is sent
    move(wiring, task, TaskState.WRAP_UP, T0 + 3)
    assert stored(wiring, "t1") == r.task_row(task)


def test_a_task_offered_in_its_own_intake_is_stored_as_routed_and_then_sent_hot(
        wiring: Wiring) -> None:
    """Intake.submit routes first: the intake's row is the offered task, written once; its
    accept then sends only the hot columns."""
    task = Task(id="t1", channel=Channel.PHONE, queue="support", customer_id=None,
                created_at=T0, base_skills={}, required_skills={}, attributes={"caller": "+1"})
    task.state, task.agent_id, task.offer_id, task.offer_expires_at = (
        TaskState.OFFERED, "a1", "o1", T0 + 60)
    events = [Event(ev.TASK_CREATED, T0, "t1", data={"channel": "phone"}),
              Event(ev.TASK_QUEUED, T0, "t1", data={"reason": "new"}),
              Event(ev.TASK_OFFERED, T0, "t1", "a1", data={"offer_id": "o1"})]
    task.customer_id = wiring.wait(wiring.store.create_task(
        task, Identity("phone", "+1"), "", events))
    assert stored(wiring, "t1") == r.task_row(task)
    assert "t1" in wiring.store._cold_sent
    set_aside(wiring, "t1", {"written": "elsewhere"})
    move(wiring, task, TaskState.ASSIGNED, T0 + 2, offer_id=None, offer_expires_at=None)
    assert stored(wiring, "t1") == {**r.task_row(task), "attributes": {"written": "elsewhere"}}


def test_a_waiting_or_ended_task_is_sent_whole(wiring: Wiring) -> None:
    """What was sent is remembered only while the task is in hand (a queue can hold many)."""
    task = new_task(wiring)
    move(wiring, task, TaskState.OFFERED, T0 + 1, agent_id="a1", offer_id="o1")
    move(wiring, task, TaskState.QUEUED, T0 + 2, agent_id=None, offer_id=None)
    assert "t1" not in wiring.store._cold_sent
    set_aside(wiring, "t1", {"written": "elsewhere"})
    move(wiring, task, TaskState.OFFERED, T0 + 3, agent_id="a2", offer_id="o2")
    assert stored(wiring, "t1") == r.task_row(task)
    move(wiring, task, TaskState.ASSIGNED, T0 + 4, offer_id=None)
    move(wiring, task, TaskState.COMPLETED, T0 + 5)
    assert wiring.store._cold_sent == {}
    assert stored(wiring, "t1") == r.task_row(task)


def test_after_a_failed_change_the_next_one_is_sent_whole(wiring: Wiring) -> None:
    task = new_task(wiring)
    move(wiring, task, TaskState.OFFERED, T0 + 1, agent_id="a1", offer_id="o1")
    task.state, task.updated_at = TaskState.ASSIGNED, T0 + 2
    broken = Event(None, T0 + 2, "t1", "a1", data={})  # type: ignore[arg-type]  # kind NOT NULL
    with pytest.raises(sa.exc.IntegrityError):
        wiring.wait(wiring.store.record(Changes(tasks=[task], events=[broken])))
    assert "t1" not in wiring.store._cold_sent
    set_aside(wiring, "t1", {"written": "elsewhere"})
    move(wiring, task, TaskState.ASSIGNED, T0 + 3)
    assert stored(wiring, "t1") == r.task_row(task)


def test_a_hot_row_after_a_whole_row_of_one_batch_keeps_the_whole_one(wiring: Wiring) -> None:
    """Calls merged by the group commit: the last row of a task wins, a slim one over the
    whole one before it (one row per task in the statement)."""
    task = new_task(wiring)
    task.state, task.agent_id, task.attributes = TaskState.OFFERED, "a1", {"category": "billing"}
    whole = r.task_row(task)
    task.state, task.updated_at = TaskState.ASSIGNED, T0 + 5
    with wiring.engine.begin() as conn:
        thd_record_many(conn, [ChangeRows(tasks=[whole]),
                               ChangeRows(tasks=[r.task_hot_row(task)])])
    assert stored(wiring, "t1") == r.task_row(task)


def test_hot_and_cold_columns_are_the_columns_of_tasks() -> None:
    columns = [c.name for c in t.tasks.columns]
    assert sorted(r.HOT_TASK_COLUMNS + r.COLD_TASK_COLUMNS + WRITE_ONCE) == sorted(columns)
    task = Task("t1", Channel.EMAIL, "q", None, T0)
    assert list(r.intake_row(task)) == columns
    assert list(r.task_row(task)) == [c for c in columns if c not in WRITE_ONCE]
