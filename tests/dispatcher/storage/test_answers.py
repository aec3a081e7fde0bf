"""The contract of `dispatcher.service.ports.AnswerStore`, on `MemoryAnswerStore`, and on
`SqlAnswerStore` on SQLite and PostgreSQL: versions, articles and /help feedback, rules, agent
shares, review items held and decided atomically with the task's events and mail, the past
replies the ranking learns from. Also the 0004 migration over a database with data in it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import sqlalchemy as sa

from dispatcher.domain.answers import (
    Answer,
    ResponseMode,
    ResponseRule,
    ReviewItem,
    make_article,
    version_of,
)
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.events import Event
from dispatcher.service.ports import Changes, MailMessage, OutboxItem, ReviewFigures
from dispatcher.storage import schema
from dispatcher.storage.answers import MemoryAnswerStore, SqlAnswerStore, thd_answered_examples
from dispatcher.storage.engine import make_engine
from dispatcher.storage.memory import MemoryStore
from tests.dispatcher.storage.test_store_contract import fired
from tests.dispatcher.storage.wiring import url_for, wire

T0 = 1_700_000_000.0


@dataclass
class H:
    answers: Any
    store: Any
    wait: Any


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def h(request: pytest.FixtureRequest) -> Iterator[H]:
    if request.param == "memory":
        store = MemoryStore()
        yield H(MemoryAnswerStore(store), store, fired)
        return
    url = url_for(request.param, request)
    schema.upgrade(url)
    w = wire(url)
    yield H(SqlAnswerStore(w.pool, w.commit), w.store, w.wait)
    w.close()


def answer(version: int = 1, **kw: Any) -> Answer:
    base = dict(id="refund", title="Refund", text="Hello {{customer_name}}", html="<p>Hi</p>",
                queues=("support",), categories=("billing",), owner="sue", version=version,
                updated_at=T0 + version)
    base.update(kw)
    return Answer(**base)


def test_answers_keep_every_version(h: H) -> None:
    v1, v2 = answer(1), answer(2, text="Hello again", retired=False)
    h.wait(h.answers.save_answer(v1, version_of(v1, "sue")))
    h.wait(h.answers.save_answer(v2, version_of(v2, "bob")))
    assert h.wait(h.answers.get_answer("refund")) == v2
    versions = h.wait(h.answers.answer_versions("refund"))
    assert [(v.version, v.author, v.text) for v in versions] == [
        (1, "sue", "Hello {{customer_name}}"), (2, "bob", "Hello again")]
    with pytest.raises(Exception):  # noqa: B017 - a stored version number is never reused
        h.wait(h.answers.save_answer(v2, version_of(v2, "eve")))
    retired = answer(3, retired=True)
    h.wait(h.answers.save_answer(retired, version_of(retired, "sue")))
    assert h.wait(h.answers.list_answers()) == []
    assert h.wait(h.answers.list_answers(include_retired=True)) == [retired]
    assert h.wait(h.answers.get_answer("nope")) is None


def test_articles_and_help_feedback(h: H) -> None:
    a1 = make_article({"id": "kb-1", "question": "Q1", "answer": "A", "category": "billing"},
                      now=T0)
    a2 = make_article({"id": "kb-2", "question": "Q2", "answer": "B", "category": "delivery"},
                      now=T0)
    for art in (a1, a2):
        h.wait(h.answers.put_article(art))
    h.wait(h.answers.put_article(replace(a1, question="Q1 v2")))
    assert [a.question for a in h.wait(h.answers.list_articles())] == ["Q1 v2", "Q2"]
    for helped in (None, None, None, True, False):
        h.wait(h.answers.record_help("kb-1", T0, helped))
    got = h.wait(h.answers.deflections())
    assert [(d.article_id, d.category, d.views, d.helped, d.not_helped) for d in got] == [
        ("kb-1", "billing", 3, 1, 1), ("kb-2", "delivery", 0, 0, 0)]
    assert got[0].rate == pytest.approx(1 / 3) and got[1].rate is None


def test_rules_and_agent_shares(h: H) -> None:
    r1 = ResponseRule("support", "billing", ResponseMode.AUTOMATIC, 0.4, 0.1)
    h.wait(h.answers.put_mode_rule(r1))
    h.wait(h.answers.put_mode_rule(ResponseRule("*", "*", ResponseMode.SUGGESTED, 1.0, 0.0)))
    h.wait(h.answers.put_mode_rule(replace(r1, threshold=0.6)))
    assert h.wait(h.answers.list_mode_rules()) == [
        ResponseRule("*", "*", ResponseMode.SUGGESTED, 1.0, 0.0), replace(r1, threshold=0.6)]
    assert h.wait(h.answers.remove_mode_rule("*", "*")) is True
    assert h.wait(h.answers.remove_mode_rule("*", "*")) is False
    h.wait(h.answers.put_agent_review("ann", 1.0))
    h.wait(h.answers.put_agent_review("bob", 0.5))
    h.wait(h.answers.put_agent_review("bob", None))
    assert h.wait(h.answers.agent_reviews()) == {"ann": 1.0}


def item(item_id: str = "r1", **kw: Any) -> ReviewItem:
    base = dict(id=item_id, task_id="t1", agent_id="ann", mode=ResponseMode.SUGGESTED,
                answer_id="refund", text="Hello", html="", queue="support", created_at=T0)
    base.update(kw)
    return ReviewItem(**base)


def outgoing(msg_id: str = "m-out") -> tuple[MailMessage, OutboxItem, Event]:
    msg = MailMessage(id=msg_id, task_id="t1", direction="out", kind="reply",
                      created_at=T0 + 5, raw=b"raw", peer="c@x.org", status="queued")
    box = OutboxItem("email", "t1", {"message": msg_id, "mail_from": "s@x", "rcpt": ["c@x.org"]},
                     T0 + 5)
    return msg, box, Event("email.queued", T0 + 5, "t1",
                           data={"message": msg_id, "mode": "suggested", "answer_id": "refund"})


def test_review_items_are_held_and_decided_with_their_events_and_mail(h: H) -> None:
    h.wait(h.answers.hold_review(item(), [Event("reply.held", T0, "t1", data={"item": "r1"})]))
    h.wait(h.answers.hold_review(item("r2", agent_id=None, mode=ResponseMode.AUTOMATIC,
                                      created_at=T0 + 1), []))
    assert [i.id for i in h.wait(h.answers.list_reviews())] == ["r1", "r2"]
    assert h.wait(h.answers.get_review("r1")) == item()
    msg, box, queued = outgoing()
    decided = replace(item(), state="edited", reviewer="sue", decided_at=T0 + 5, score=4,
                      max_score=5, checklist={"tone": True, "correct": False},
                      final_text="Hello!", note="shorter")
    reviewed = Event("reply.reviewed", T0 + 5, "t1", data={"decision": "edited"})
    h.wait(h.answers.decide_review(decided, [msg], Changes(events=[reviewed, queued],
                                                           outbox=[box])))
    assert h.wait(h.answers.get_review("r1")) == decided
    assert [i.id for i in h.wait(h.answers.list_reviews())] == ["r2"]
    assert len(h.wait(h.answers.list_reviews(None))) == 2
    kinds = [e.kind for e in h.wait(h.store.task_events("t1"))]
    assert kinds == ["reply.held", "reply.reviewed", "email.queued"]
    assert [m.id for m in h.wait(h.store.mail_messages("t1"))] == ["m-out"]
    due = h.wait(h.store.due_mail(T0 + 10, 10))
    assert [d.message for d in due] == ["m-out"]
    with pytest.raises(InvalidValue):  # decided once only; nothing else is written
        h.wait(h.answers.decide_review(replace(decided, state="approved"), [outgoing("m2")[0]],
                                       Changes()))
    assert [m.id for m in h.wait(h.store.mail_messages("t1"))] == ["m-out"]
    rejected = replace(item("r2", agent_id=None, mode=ResponseMode.AUTOMATIC, created_at=T0 + 1),
                       state="rejected", reviewer="sue", decided_at=T0 + 6, score=1, max_score=5)
    h.wait(h.answers.decide_review(rejected, [], Changes()))
    assert h.wait(h.answers.review_figures()) == [
        ReviewFigures("support", None, 1, 0, 0, 1, 1, 5),
        ReviewFigures("support", "ann", 1, 0, 1, 0, 4, 5)]


def test_past_replies_with_an_answer_are_examples(h: H) -> None:
    inbound = MailMessage(id="m-in", task_id="t1", direction="in", kind="customer",
                          created_at=T0, raw=b"r", peer="c@x.org", subject="Refund?",
                          text="where is my money")
    other = MailMessage(id="m-in2", task_id="t2", direction="in", kind="customer",
                        created_at=T0, raw=b"r", peer="d@x.org", subject="Hi", text="hello")
    msg, box, queued = outgoing()
    h.wait(h.store.add_mail([inbound, other, msg], Changes(events=[
        queued, Event("email.queued", T0, "t2", data={"message": "x", "answer_id": None})])))
    assert h.wait(h.answers.answered_examples(10)) == [("refund", "Refund?\nwhere is my money")]


def test_past_replies_are_read_through_their_index_not_the_whole_log(sql_url: str) -> None:
    """Every start reads the last replies sent with an answer: the read walks their partial
    index (migration 0020), however long the event log (before: the log, newest first, to
    its start when few replies used an answer). The plan is asked of the query as it runs; on
    PostgreSQL with sequential scans off, so that a tiny table does not hide which index the
    query can use."""
    engine = make_engine(sql_url)
    seen: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if "task_events" in statement:
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        with engine.connect() as conn:
            thd_answered_examples(conn, 5000)
        statement, parameters = seen[0]
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            if engine.dialect.name == "sqlite":
                cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            else:
                cursor.execute("SET enable_seqscan = off")
                cursor.execute("EXPLAIN " + statement, parameters)
            plan = str(cursor.fetchall())
        finally:
            raw.close()
    finally:
        engine.dispose()
    assert "ix_task_events_answered" in plan, plan


def test_0004_upgrades_a_0003_database_with_data_in_it(empty_url: str) -> None:
    schema.upgrade(empty_url, "0003")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO tasks (id, channel, queue, customer_id, created_at, base_skills,"
                " priority, attributes, state, step, required_skills) VALUES ('t1', 'email',"
                " 'support', NULL, 1.0, '{}', 0, '{}', 'queued', 0, '{}')"))
            conn.execute(sa.text("INSERT INTO email_requests (number, task_id) VALUES (7, 't1')"))
        schema.upgrade(empty_url, "0004")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id, state FROM tasks")).all() == [("t1", "queued")]
            for table in ("answers", "answer_versions", "kb_articles", "kb_feedback",
                          "response_rules", "review_agents", "review_items"):
                assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0
        schema.downgrade(empty_url, "0003")
        with engine.connect() as conn:
            assert "answers" not in sa.inspect(conn).get_table_names()
            assert conn.execute(sa.text("SELECT number FROM email_requests")).all() == [(7,)]
    finally:
        engine.dispose()
