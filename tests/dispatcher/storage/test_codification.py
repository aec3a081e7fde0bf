"""The contract of the `CodificationStore` and `CollaborationStore` ports, run on every
implementation: memory, SQLite and PostgreSQL. Notes, consults and reminders commit with their
task events (and mail) in one transaction: the trail shows them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from dispatcher.domain.categories import Category, CategoryRule
from dispatcher.domain.events import Event
from dispatcher.domain.tasks import Channel, Task
from dispatcher.service.ports import (
    Changes,
    Consult,
    MailMessage,
    OutboxItem,
    Reminder,
    TaskNote,
    TrainingExample,
)
from dispatcher.storage.codification import (
    MemoryCodificationStore,
    MemoryCollaborationStore,
    SqlCodificationStore,
    SqlCollaborationStore,
)
from dispatcher.storage.configuration import MemoryConfigurationLog, SqlConfigurationLog
from dispatcher.storage.memory import MemoryStore
from tests.dispatcher.storage.test_store_contract import fired
from tests.dispatcher.storage.wiring import url_for, wire

T0 = 1_700_000_000.0


@dataclass
class Harness:
    store: Any
    codes: Any
    collab: Any
    wait: Callable[[Deferred[Any]], Any]
    log: Any = None  # the agent log (ConfigurationLog), where audit events land


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def h(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "memory":
        store = MemoryStore()
        yield Harness(store, MemoryCodificationStore(store), MemoryCollaborationStore(store),
                      fired, MemoryConfigurationLog(store))
        return
    from dispatcher.storage import schema

    url = url_for(request.param, request)
    schema.upgrade(url)
    w = wire(url)
    yield Harness(w.store, SqlCodificationStore(w.pool, w.commit),
                  SqlCollaborationStore(w.pool, w.commit), w.wait, SqlConfigurationLog(w.pool))
    w.close()


def a_task(h: Harness, task_id: str = "t1") -> str:
    task = Task(id=task_id, channel=Channel.EMAIL, queue="support", customer_id=None,
                created_at=T0)
    h.wait(h.store.create_task(task, None, "", [Event("task.created", T0, task_id)]))
    return task_id


def kinds(h: Harness, task_id: str) -> list[str]:
    return [e.kind for e in h.wait(h.store.task_events(task_id))]


def test_categories_are_replaced_by_name(h: Harness) -> None:
    h.wait(h.codes.put_category(Category("billing", queue="accounts", priority=40,
                                         skills={"billing": 3}, attributes={"vip": True})))
    h.wait(h.codes.put_category(Category("billing", description="money")))
    h.wait(h.codes.put_category(Category("delivery")))
    assert h.wait(h.codes.list_categories()) == [Category("billing", description="money"),
                                                  Category("delivery")]


def test_rules_come_back_in_evaluation_order_and_can_be_removed(h: Harness) -> None:
    late = h.wait(h.codes.add_rule(CategoryRule("b", "subject", "x", position=20)))
    early = h.wait(h.codes.add_rule(CategoryRule("a", "body", "y, z", "keywords", 10, False)))
    rules = h.wait(h.codes.list_rules())
    assert [(r.id, r.category, r.match, r.enabled) for r in rules] == [
        (early, "a", "keywords", False), (late, "b", "regex", True)]
    assert h.wait(h.codes.remove_rule(early)) is True
    assert h.wait(h.codes.remove_rule(early)) is False
    assert [r.id for r in h.wait(h.codes.list_rules())] == [late]


def test_examples_newest_kept_oldest_first(h: Harness) -> None:
    h.wait(h.codes.add_examples([TrainingExample(f"text {n}", "c", "import", T0 + n, None)
                                 for n in range(5)]))
    h.wait(h.codes.add_examples([TrainingExample("fix", "d", "agent", T0 + 9, "t1",
                                                 "agent:ann")]))
    got = h.wait(h.codes.examples(3))
    assert [e.text for e in got] == ["text 3", "text 4", "fix"]
    assert (got[-1].task_id, got[-1].actor, got[-1].source) == ("t1", "agent:ann", "agent")
    assert h.wait(h.codes.example_count()) == 6


def test_a_note_commits_with_its_event(h: Harness) -> None:
    task_id = a_task(h)
    event = Event("task.note", T0 + 1, task_id, "ann", "agent:ann", {"text": "hello"})
    note_id = h.wait(h.collab.add_note(TaskNote(task_id, "agent:ann", "hello", T0 + 1),
                                       Changes(events=[event])))
    [note] = h.wait(h.collab.notes(task_id))
    assert (note.id, note.text, note.author) == (note_id, "hello", "agent:ann")
    trail = h.wait(h.store.task_events(task_id))
    assert trail[-1].kind == "task.note" and trail[-1].data == {"text": "hello", "note": note_id}


def message(task_id: str, kind: str, direction: str, message_id: str) -> MailMessage:
    return MailMessage(id=f"m-{message_id}", task_id=task_id, direction=direction, kind=kind,
                       created_at=T0 + 2, raw=b"Subject: q\r\n\r\nq\r\n", message_id=message_id,
                       peer="e@lab.example" if direction == "out" else None, subject="q")


def test_consults_are_found_by_token_or_message_id_and_answered(h: Harness) -> None:
    task_id = a_task(h)
    consult = Consult("a" * 32, task_id, "ann", "e@lab.example", "c1@sb", T0 + 2)
    out = message(task_id, "consult", "out", "c1@sb")
    item = OutboxItem("email", task_id, {"message": out.id, "mail_from": "s@sb",
                                         "rcpt": ["e@lab.example"]}, T0 + 2)
    h.wait(h.collab.add_consult(consult, [out], Changes(
        events=[Event("consult.sent", T0 + 2, task_id)], outbox=[item])))
    assert h.wait(h.collab.find_consult("a" * 32)) == consult
    assert h.wait(h.collab.find_consult(None, ["zz", "c1@sb"])) == consult
    assert h.wait(h.collab.find_consult("b" * 32, ["zz"])) is None
    assert [d.message for d in h.wait(h.store.due_mail(T0 + 3, 10))] == [out.id]
    answer = message(task_id, "consult", "in", "r1@lab")
    h.wait(h.collab.answer_consult(consult.token, T0 + 5, [answer], Changes(
        events=[Event("consult.answered", T0 + 5, task_id)])))
    [stored] = h.wait(h.collab.consults(task_id))
    assert stored.answered_at == T0 + 5
    assert [m.id for m in h.wait(h.store.mail_messages(task_id))] == [out.id, answer.id]
    assert kinds(h, task_id)[-2:] == ["consult.sent", "consult.answered"]


def test_reminders_pending_replaced_and_settled_with_the_task(h: Harness) -> None:
    task_id = a_task(h)
    first = Reminder("r1", task_id, "ann", T0 + 100, T0)
    h.wait(h.collab.add_reminder(first, Changes(events=[Event("reminder.set", T0, task_id)])))
    second = Reminder("r2", task_id, "ann", T0 + 50, T0 + 1, "later")
    h.wait(h.collab.add_reminder(second, Changes()))
    a_task(h, "t2")
    third = Reminder("r3", "t2", "bob", T0 + 10, T0 + 1)
    h.wait(h.collab.add_reminder(third, Changes()))
    assert [r.id for r in h.wait(h.collab.pending_reminders())] == ["r3", "r2"]  # by due time
    back = Task(id=task_id, channel=Channel.EMAIL, queue="support", customer_id=None,
                created_at=T0, priority=7)
    h.wait(h.collab.settle_reminder("r2", "done", Changes(
        tasks=[back], events=[Event("reminder.due", T0 + 50, task_id)])))
    assert [r.id for r in h.wait(h.collab.pending_reminders())] == ["r3"]
    assert h.wait(h.store.get_task(task_id)).priority == 7
    assert kinds(h, task_id)[-1] == "reminder.due"


def test_category_and_rule_changes_commit_with_their_audit_events(h: Harness) -> None:
    def changed(action: str) -> Event:
        return Event("config.changed", T0, None, "operator", "operator",
                     {"what": "category_rule", "action": action})

    h.wait(h.codes.put_category(Category("billing", queue="accounts"), [changed("set")]))
    rule_id = h.wait(h.codes.add_rule(CategoryRule("billing", "subject", "invoice"),
                                      [changed("added")]))
    assert h.wait(h.codes.remove_rule(rule_id, [changed("removed")])) is True
    assert h.wait(h.codes.remove_rule(rule_id, [changed("removed again")])) is False
    log = h.wait(h.log.changes_after(0, ("config.changed",), 10, T0 + 60)).changes
    assert [(data["action"], data.get("rule")) for _, _, _, data in log] == [
        ("set", None), ("added", rule_id), ("removed", None)]
