"""The `dispatcher.service.ports.AnswerStore` port: `SqlAnswerStore` (SQLAlchemy Core on the
pool, the writes that touch a task through the group commit) and `MemoryAnswerStore` (in
process, for unit tests and the simulator; the same contract suite runs on both).

Sits under `dispatcher.storage`, beside `sql.py`, whose snapshots and `thd_add_mails` it reuses:
a reviewer's decision, the mail it sends and the task's events and state commit in one
transaction, ordered with the router's other writes. `thd_*` functions run on the database
thread and return dataclasses, never rows.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred, fail, succeed

from dispatcher.domain.answers import (
    HELD,
    Answer,
    AnswerVersion,
    Article,
    Deflection,
    ResponseMode,
    ResponseRule,
    ReviewItem,
)
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.events import (
    EMAIL_QUEUED,  # its data names the answer used
    Event,
)
from dispatcher.service.ports import Changes, MailMessage, ReviewFigures

from . import rows as r
from . import tables as t
from .commit import GroupCommit
from .pool import Pool
from .sql import ChangeRows, MailAddition, mail_rows, thd_add_mails

EXAMPLE_TEXT_CHARS = 4000
DECIDED = ("approved", "edited", "rejected")


# --- rows -------------------------------------------------------------------------------------


def answer_row(a: Answer) -> r.Row:
    return {"id": a.id, "title": a.title, "text_body": a.text, "html_body": a.html,
            "language": a.language, "queues": list(a.queues), "categories": list(a.categories),
            "owner": a.owner, "version": a.version, "updated_at": a.updated_at,
            "retired": bool(a.retired)}


def answer_from_row(row: Any) -> Answer:
    return Answer(id=row.id, title=row.title, text=row.text_body, html=row.html_body,
                  language=row.language, queues=tuple(row.queues),
                  categories=tuple(row.categories), owner=row.owner, version=row.version,
                  updated_at=row.updated_at, retired=bool(row.retired))


def version_row(v: AnswerVersion) -> r.Row:
    return {"answer_id": v.answer_id, "version": v.version, "title": v.title,
            "text_body": v.text, "html_body": v.html, "language": v.language,
            "queues": list(v.queues), "categories": list(v.categories), "owner": v.owner,
            "author": v.author, "at": v.at, "retired": bool(v.retired)}


def version_from_row(row: Any) -> AnswerVersion:
    return AnswerVersion(row.answer_id, row.version, row.title, row.text_body, row.html_body,
                         row.language, tuple(row.queues), tuple(row.categories), row.owner,
                         row.author, row.at, bool(row.retired))


def article_row(a: Article) -> r.Row:
    return {"id": a.id, "question": a.question, "answer": a.answer, "category": a.category,
            "language": a.language, "updated_at": a.updated_at, "retired": bool(a.retired)}


def article_from_row(row: Any) -> Article:
    return Article(row.id, row.question, row.answer, row.category, row.language,
                   row.updated_at, bool(row.retired))


def rule_row(rule: ResponseRule) -> r.Row:
    return {"queue": rule.queue, "category": rule.category, "mode": rule.mode.value,
            "threshold": rule.threshold, "review_share": rule.review_share}


def rule_from_row(row: Any) -> ResponseRule:
    return ResponseRule(row.queue, row.category, ResponseMode(row.mode), row.threshold,
                        row.review_share)


def review_row(i: ReviewItem) -> r.Row:
    return {"id": i.id, "task_id": i.task_id, "agent_id": i.agent_id, "mode": i.mode.value,
            "answer_id": i.answer_id, "text_body": i.text, "html_body": i.html,
            "queue": i.queue, "created_at": i.created_at, "state": i.state,
            "reviewer": i.reviewer, "decided_at": i.decided_at, "score": i.score,
            "max_score": i.max_score, "checklist": dict(i.checklist),
            "final_text": i.final_text, "note": i.note}


def review_from_row(row: Any) -> ReviewItem:
    return ReviewItem(id=row.id, task_id=row.task_id, agent_id=row.agent_id,
                      mode=ResponseMode(row.mode), answer_id=row.answer_id, text=row.text_body,
                      html=row.html_body, queue=row.queue, created_at=row.created_at,
                      state=row.state, reviewer=row.reviewer, decided_at=row.decided_at,
                      score=row.score, max_score=row.max_score,
                      checklist=dict(row.checklist or {}), final_text=row.final_text,
                      note=row.note)


def figures(items: Sequence[ReviewItem]) -> list[ReviewFigures]:
    """Per (queue, agent) review figures of decided items (both stores use it)."""
    acc: dict[tuple[str, str | None], list[int]] = {}
    for i in items:
        if i.state not in DECIDED:
            continue
        f = acc.setdefault((i.queue, i.agent_id), [0, 0, 0, 0, 0, 0])
        f[0] += 1
        f[1 + DECIDED.index(i.state)] += 1
        f[4] += i.score or 0
        f[5] += i.max_score or 0
    return [ReviewFigures(q, a, *f) for (q, a), f in
            sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]


# --- database work ----------------------------------------------------------------------------


def thd_save_answer(conn: sa.Connection, answer: r.Row, version: r.Row,
                    events: Sequence[r.Row] = ()) -> None:
    conn.execute(t.answer_versions.insert(), [version])
    if events:  # the audit of who changed the library, in their own log
        conn.execute(t.agent_events.insert(), list(events))
    table = t.answers
    if conn.execute(sa.select(table.c.id).where(table.c.id == answer["id"])).first():
        conn.execute(table.update().where(table.c.id == answer["id"]).values(**answer))
    else:
        conn.execute(table.insert(), [answer])


def thd_get_answer(conn: sa.Connection, answer_id: str) -> Answer | None:
    row = conn.execute(sa.select(t.answers).where(t.answers.c.id == answer_id)).first()
    return None if row is None else answer_from_row(row)


def thd_list_answers(conn: sa.Connection, include_retired: bool) -> list[Answer]:
    q = sa.select(t.answers).order_by(t.answers.c.id)
    if not include_retired:
        q = q.where(t.answers.c.retired.is_(False))
    return [answer_from_row(row) for row in conn.execute(q)]


def thd_answer_versions(conn: sa.Connection, answer_id: str) -> list[AnswerVersion]:
    v = t.answer_versions
    q = sa.select(v).where(v.c.answer_id == answer_id).order_by(v.c.version)
    return [version_from_row(row) for row in conn.execute(q)]


def _put(conn: sa.Connection, table: sa.Table, row: r.Row) -> None:
    keys = [c.name for c in table.primary_key.columns]
    where = sa.and_(*(table.c[k] == row[k] for k in keys))
    if conn.execute(sa.select(*(table.c[k] for k in keys)).where(where)).first():
        conn.execute(table.update().where(where).values(**row))
    else:
        conn.execute(table.insert(), [row])


def thd_put_article(conn: sa.Connection, row: r.Row) -> None:
    _put(conn, t.kb_articles, row)


def thd_list_articles(conn: sa.Connection, include_retired: bool) -> list[Article]:
    q = sa.select(t.kb_articles).order_by(t.kb_articles.c.id)
    if not include_retired:
        q = q.where(t.kb_articles.c.retired.is_(False))
    return [article_from_row(row) for row in conn.execute(q)]


def thd_record_help(conn: sa.Connection, article_id: str, at: float,
                    helped: bool | None) -> None:
    conn.execute(t.kb_feedback.insert(), [{"article_id": article_id, "at": at,
                                           "helped": helped}])


def thd_deflections(conn: sa.Connection) -> list[Deflection]:
    f, a = t.kb_feedback, t.kb_articles
    q = (sa.select(a.c.id, a.c.category,
                   sa.func.count(f.c.id).filter(f.c.helped.is_(None)),
                   sa.func.count(f.c.id).filter(f.c.helped.is_(True)),
                   sa.func.count(f.c.id).filter(f.c.helped.is_(False)))
         .select_from(a.outerjoin(f, f.c.article_id == a.c.id))
         .group_by(a.c.id, a.c.category).order_by(a.c.category, a.c.id))
    return [Deflection(i, c, int(v), int(y), int(n)) for i, c, v, y, n in conn.execute(q)]


def thd_put_rule(conn: sa.Connection, row: r.Row) -> None:
    _put(conn, t.response_rules, row)


def thd_remove_rule(conn: sa.Connection, queue: str, category: str) -> bool:
    rr = t.response_rules
    result = conn.execute(rr.delete().where(rr.c.queue == queue, rr.c.category == category))
    return bool(result.rowcount)


def thd_list_rules(conn: sa.Connection) -> list[ResponseRule]:
    rr = t.response_rules
    return [rule_from_row(row) for row in
            conn.execute(sa.select(rr).order_by(rr.c.queue, rr.c.category))]


def thd_put_agent_review(conn: sa.Connection, agent_id: str, share: float | None) -> None:
    ra = t.review_agents
    conn.execute(ra.delete().where(ra.c.agent_id == agent_id))
    if share is not None:
        conn.execute(ra.insert(), [{"agent_id": agent_id, "share": share}])


def thd_agent_reviews(conn: sa.Connection) -> dict[str, float]:
    return {a: s for a, s in conn.execute(sa.select(t.review_agents))}


def thd_answered_examples(conn: sa.Connection, limit: int) -> list[tuple[str, str]]:
    """The last `limit` replies sent with an answer: (answer id, the customer's text it
    answered). The replies are read through their partial index (tables.py `ANSWERED_WHERE`,
    written out as the index's own terms): `limit` rows at most, however long the log."""
    e, m = t.task_events, t.email_messages
    answer = e.c.data["answer_id"].as_string()
    q = (sa.select(e.c.task_id, answer).where(sa.text(t.ANSWERED_WHERE[conn.dialect.name]))
         .order_by(e.c.id.desc()).limit(limit))
    used = [(task_id, answer_id) for task_id, answer_id in conn.execute(q) if answer_id]
    texts: dict[str, str] = {}
    ids = sorted({task_id for task_id, _ in used})
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        q = (sa.select(m.c.task_id, m.c.subject, m.c.text_body)
             .where(m.c.task_id.in_(chunk), m.c.direction == "in")
             .order_by(m.c.created_at, m.c.id))
        for task_id, subject, text in conn.execute(q):
            texts.setdefault(task_id, f"{subject}\n{text}"[:EXAMPLE_TEXT_CHARS])
    return [(answer_id, texts[task_id]) for task_id, answer_id in used if task_id in texts]


def thd_hold_review(conn: sa.Connection, item: r.Row, events: list[r.Row]) -> None:
    conn.execute(t.review_items.insert(), [item])
    if events:
        conn.execute(t.task_events.insert(), events)


def thd_decide_review(conn: sa.Connection, item: r.Row, mail: MailAddition) -> None:
    ri = t.review_items
    values = {k: v for k, v in item.items() if k != "id"}
    result = conn.execute(ri.update().where(ri.c.id == item["id"], ri.c.state == HELD)
                          .values(**values))
    if result.rowcount != 1:
        raise InvalidValue(f"review item {item['id']} is not waiting for a decision")
    thd_add_mails(conn, [mail])


def thd_get_review(conn: sa.Connection, item_id: str) -> ReviewItem | None:
    row = conn.execute(sa.select(t.review_items).where(t.review_items.c.id == item_id)).first()
    return None if row is None else review_from_row(row)


def thd_list_reviews(conn: sa.Connection, state: str | None, limit: int) -> list[ReviewItem]:
    ri = t.review_items
    q = sa.select(ri).order_by(ri.c.created_at, ri.c.id).limit(limit)
    if state is not None:
        q = q.where(ri.c.state == state)
    return [review_from_row(row) for row in conn.execute(q)]


def thd_review_figures(conn: sa.Connection) -> list[ReviewFigures]:
    ri = t.review_items
    q = (sa.select(ri.c.queue, ri.c.agent_id, ri.c.state, sa.func.count(),
                   sa.func.coalesce(sa.func.sum(ri.c.score), 0),
                   sa.func.coalesce(sa.func.sum(ri.c.max_score), 0))
         .where(ri.c.state.in_(DECIDED)).group_by(ri.c.queue, ri.c.agent_id, ri.c.state))
    acc: dict[tuple[str, str | None], list[int]] = {}
    for queue, agent_id, state, n, points, most in conn.execute(q):
        f = acc.setdefault((queue, agent_id), [0, 0, 0, 0, 0, 0])
        f[0] += n
        f[1 + DECIDED.index(state)] += n
        f[4] += int(points)
        f[5] += int(most)
    return [ReviewFigures(q, a, *f) for (q, a), f in
            sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]


# --- the SQL port -----------------------------------------------------------------------------


class SqlAnswerStore:
    def __init__(self, pool: Pool, group_commit: GroupCommit) -> None:
        self._pool = pool
        self._commit = group_commit

    def save_answer(self, answer: Answer, version: AnswerVersion,
                    events: Sequence[Event] = ()) -> Deferred[None]:
        return self._pool.run(thd_save_answer, answer_row(answer), version_row(version),
                              [r.event_row(e) for e in events])

    def get_answer(self, answer_id: str) -> Deferred[Answer | None]:
        return self._pool.run(thd_get_answer, answer_id)

    def list_answers(self, include_retired: bool = False) -> Deferred[list[Answer]]:
        return self._pool.run(thd_list_answers, include_retired)

    def answer_versions(self, answer_id: str) -> Deferred[list[AnswerVersion]]:
        return self._pool.run(thd_answer_versions, answer_id)

    def put_article(self, article: Article) -> Deferred[None]:
        return self._pool.run(thd_put_article, article_row(article))

    def list_articles(self, include_retired: bool = False) -> Deferred[list[Article]]:
        return self._pool.run(thd_list_articles, include_retired)

    def record_help(self, article_id: str, at: float, helped: bool | None) -> Deferred[None]:
        return self._pool.run(thd_record_help, article_id, at, helped)

    def deflections(self) -> Deferred[list[Deflection]]:
        return self._pool.run(thd_deflections)

    def put_mode_rule(self, rule: ResponseRule) -> Deferred[None]:
        return self._pool.run(thd_put_rule, rule_row(rule))

    def remove_mode_rule(self, queue: str, category: str) -> Deferred[bool]:
        return self._pool.run(thd_remove_rule, queue, category)

    def list_mode_rules(self) -> Deferred[list[ResponseRule]]:
        return self._pool.run(thd_list_rules)

    def put_agent_review(self, agent_id: str, share: float | None) -> Deferred[None]:
        return self._pool.run(thd_put_agent_review, agent_id, share)

    def agent_reviews(self) -> Deferred[dict[str, float]]:
        return self._pool.run(thd_agent_reviews)

    def answered_examples(self, limit: int) -> Deferred[list[tuple[str, str]]]:
        return self._pool.run(thd_answered_examples, limit)

    def hold_review(self, item: ReviewItem, events: Sequence[Event]) -> Deferred[None]:
        return self._commit.run(thd_hold_review, review_row(item),
                                [r.event_row(e) for e in events])

    def decide_review(self, item: ReviewItem, messages: Sequence[MailMessage],
                      changes: Changes) -> Deferred[None]:
        rows, attachments = mail_rows(messages)
        snap = ChangeRows(
            tasks=[r.task_row(task) for task in changes.tasks],
            events=[r.event_row(e) for e in changes.events],
            declines=[{"task_id": k, "agent_id": a} for k, a in changes.declines],
            outbox=[r.outbox_row(o) for o in changes.outbox],
        )
        return self._commit.run(thd_decide_review, review_row(item),
                                MailAddition(rows, attachments, snap))

    def get_review(self, item_id: str) -> Deferred[ReviewItem | None]:
        return self._pool.run(thd_get_review, item_id)

    def list_reviews(self, state: str | None = HELD, limit: int = 100
                     ) -> Deferred[list[ReviewItem]]:
        return self._pool.run(thd_list_reviews, state, limit)

    def review_figures(self) -> Deferred[list[ReviewFigures]]:
        return self._pool.run(thd_review_figures)


# --- the memory port --------------------------------------------------------------------------


@dataclass
class _Feedback:
    article_id: str
    at: float
    helped: bool | None


class MemoryAnswerStore:
    """The port in memory. Writes that touch a task go to `store` (a MemoryStore), so the task's
    events and mail are where its other stores look for them. Every Deferred has fired."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._answers: dict[str, Answer] = {}
        self._versions: dict[tuple[str, int], AnswerVersion] = {}
        self._articles: dict[str, Article] = {}
        self._feedback: list[_Feedback] = []
        self._rules: dict[tuple[str, str], ResponseRule] = {}
        self._agents: dict[str, float] = {}
        self._reviews: dict[str, ReviewItem] = {}
        self._order = itertools.count()
        self._seq: dict[str, int] = {}

    def save_answer(self, answer: Answer, version: AnswerVersion,
                    events: Sequence[Event] = ()) -> Deferred[None]:
        key = (version.answer_id, version.version)
        if key in self._versions:
            return fail(InvalidValue(f"answer {key[0]} version {key[1]} is already stored"))
        self._versions[key] = version
        self._answers[answer.id] = answer
        if events:
            self.store.record(Changes(events=list(events)))
        return succeed(None)

    def get_answer(self, answer_id: str) -> Deferred[Answer | None]:
        return succeed(self._answers.get(answer_id))

    def list_answers(self, include_retired: bool = False) -> Deferred[list[Answer]]:
        return succeed([a for _, a in sorted(self._answers.items())
                        if include_retired or not a.retired])

    def answer_versions(self, answer_id: str) -> Deferred[list[AnswerVersion]]:
        return succeed([v for (a, _), v in sorted(self._versions.items()) if a == answer_id])

    def put_article(self, article: Article) -> Deferred[None]:
        self._articles[article.id] = article
        return succeed(None)

    def list_articles(self, include_retired: bool = False) -> Deferred[list[Article]]:
        return succeed([a for _, a in sorted(self._articles.items())
                        if include_retired or not a.retired])

    def record_help(self, article_id: str, at: float, helped: bool | None) -> Deferred[None]:
        self._feedback.append(_Feedback(article_id, at, helped))
        return succeed(None)

    def deflections(self) -> Deferred[list[Deflection]]:
        out = []
        for a in sorted(self._articles.values(), key=lambda a: (a.category, a.id)):
            mine = [f.helped for f in self._feedback if f.article_id == a.id]
            out.append(Deflection(a.id, a.category, mine.count(None), mine.count(True),
                                  mine.count(False)))
        return succeed(out)

    def put_mode_rule(self, rule: ResponseRule) -> Deferred[None]:
        self._rules[(rule.queue, rule.category)] = rule
        return succeed(None)

    def remove_mode_rule(self, queue: str, category: str) -> Deferred[bool]:
        return succeed(self._rules.pop((queue, category), None) is not None)

    def list_mode_rules(self) -> Deferred[list[ResponseRule]]:
        return succeed([r for _, r in sorted(self._rules.items())])

    def put_agent_review(self, agent_id: str, share: float | None) -> Deferred[None]:
        if share is None:
            self._agents.pop(agent_id, None)
        else:
            self._agents[agent_id] = share
        return succeed(None)

    def agent_reviews(self) -> Deferred[dict[str, float]]:
        return succeed(dict(self._agents))

    def answered_examples(self, limit: int) -> Deferred[list[tuple[str, str]]]:
        events = [e for e in self.store._task_events
                  if e.kind == EMAIL_QUEUED and e.data.get("answer_id")]
        events.sort(key=lambda e: e.id, reverse=True)
        out = []
        for e in events[:limit]:
            inbound = [m for m in self.store._mail.messages.values()
                       if m.task_id == e.task_id and m.direction == "in"]
            if inbound:
                first = min(inbound, key=lambda m: (m.created_at, m.id))
                out.append((e.data["answer_id"],
                            f"{first.subject}\n{first.text}"[:EXAMPLE_TEXT_CHARS]))
        return succeed(out)

    def hold_review(self, item: ReviewItem, events: Sequence[Event]) -> Deferred[None]:
        if item.id in self._reviews:
            return fail(InvalidValue(f"review item {item.id} exists"))
        self._reviews[item.id] = copy.deepcopy(item)
        self._seq[item.id] = next(self._order)
        return self.store.record(Changes(events=list(events)))

    def decide_review(self, item: ReviewItem, messages: Sequence[MailMessage],
                      changes: Changes) -> Deferred[None]:
        held = self._reviews.get(item.id)
        if held is None or held.state != HELD:
            return fail(InvalidValue(f"review item {item.id} is not waiting for a decision"))
        self._reviews[item.id] = replace(copy.deepcopy(item), created_at=held.created_at)
        return self.store.add_mail(list(messages), changes)

    def get_review(self, item_id: str) -> Deferred[ReviewItem | None]:
        found = self._reviews.get(item_id)
        return succeed(copy.deepcopy(found) if found else None)

    def list_reviews(self, state: str | None = HELD, limit: int = 100
                     ) -> Deferred[list[ReviewItem]]:
        items = [i for i in self._reviews.values() if state is None or i.state == state]
        items.sort(key=lambda i: (i.created_at, i.id))
        return succeed([copy.deepcopy(i) for i in items[:limit]])

    def review_figures(self) -> Deferred[list[ReviewFigures]]:
        return succeed(figures(list(self._reviews.values())))
