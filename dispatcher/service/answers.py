"""Answers: the answer library, the knowledge base and the response-mode rules, as use cases.

Sits in the service layer over the `AnswerStore` port. What it promises:
- Every save of an answer whose content changed appends a version (who, when, what); saving
  identical content changes nothing. Answers are retired, never deleted (history stays).
- The library, the articles and the rules are loaded once (`load`) and kept in memory for the
  decisions of one e-mail (no database read per e-mail); the ranking index is built at `load`
  and rebuilt after a change, debounced (`REBUILD_DELAY`), so importing 5,000 answers rebuilds
  it once; with an `offload` (the runtime's thread pool) every build runs off the reactor, the
  one at start-up included, one at a time (what changes meanwhile makes one more build). A start
  does not wait for its build: what ranks waits for it (`indexed`), so no ranking ever uses the
  empty index of a library not yet built.
- Import and export use JSON Lines (one JSON object per line, UTF-8; docs/answers.md): export
  then import gives the same library; an import is checked entirely before anything is saved
  (`check_only`: checked, nothing saved; `first_line`: the number of the first line given, for
  a file sent in parts).
- A change made with an `actor` (a supervisor's, from the console) is also audited in the
  author's own log, in the same transaction as the version: `answer.saved` / `answer.retired`
  (data: answer_id, version, title).
- Placeholder values of a task (`values`) come from the task, its customer and the agent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.python.failure import Failure

from dispatcher.domain.answers import (
    Answer,
    AnswerVersion,
    Article,
    Deflection,
    ResponseRule,
    check_id,
    make_answer,
    make_article,
    make_rule,
    rule_for,
    same_content,
    values_for,
    version_of,
)
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.events import ANSWER_RETIRED, ANSWER_SAVED, Event
from dispatcher.domain.tasks import Task

from .ports import AnswerStore
from .suggest import ARTICLE, Ranker, Suggestion
from .wire import NotJson, read_json

log = logging.getLogger(__name__)

REBUILD_DELAY = 0.5  # seconds after the last change before the index is rebuilt
EXAMPLES_LIMIT = 5000  # past replies the ranking learns from
LEARN_REBUILD_DELAY = 600.0  # new past replies reach the index within ten minutes
MAX_IMPORT_LINES = 100_000
EXPORT_FIELDS = ("id", "title", "text", "html", "language", "queues", "categories", "owner",
                 "version", "retired")
ARTICLE_FIELDS = ("id", "question", "answer", "category", "language", "retired")


@dataclass(frozen=True, slots=True)
class Imported:
    created: int
    updated: int
    unchanged: int


def answer_json(a: Answer) -> dict[str, Any]:
    data = asdict(a)
    data["queues"], data["categories"] = list(a.queues), list(a.categories)
    return {k: data[k] for k in EXPORT_FIELDS}


def article_json(a: Article) -> dict[str, Any]:
    data = asdict(a)
    return {k: data[k] for k in ARTICLE_FIELDS}


def parse_lines(lines: Iterable[str], what: str, first_line: int = 1
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """The objects of a JSON Lines file (blank lines skipped, each object's line number in
    `_line`, counted from `first_line`) and the errors of the lines that are not one JSON
    object."""
    out: list[dict[str, Any]] = []
    errors: list[str] = []
    for n, line in enumerate(lines, first_line):
        if n - first_line >= MAX_IMPORT_LINES:
            errors.append(f"more than {MAX_IMPORT_LINES} lines")
            break
        if not line.strip():
            continue
        try:
            obj = read_json(line)
        except NotJson as exc:
            errors.append(f"line {n}: not JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            errors.append(f"line {n}: a line is one JSON object (one {what})")
            continue
        obj["_line"] = n
        out.append(obj)
    return out, errors


def format_deadline(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


class Library:
    def __init__(self, store: AnswerStore, clock: Any, ranker: Ranker | None = None,
                 offload: Callable[..., Deferred[Any]] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.ranker = ranker or Ranker()
        # `offload(fn, *args) -> Deferred`: run a rebuild off the reactor thread (the runtime
        # passes a thread pool: fitting 5,000 answers takes seconds); None: inline.
        self.offload = offload
        self.answers: dict[str, Answer] = {}  # every answer, retired included
        self.articles: dict[str, Article] = {}
        self.rules: list[ResponseRule] = []
        self.agent_shares: dict[str, float] = {}
        self.examples: list[tuple[str, str]] = []
        self._rebuild_call: Any = None
        # One build off the reactor at a time (`_rebuild`); the rebuilds asked for meanwhile.
        self._building = False
        self._waiting: list[Deferred[None]] = []
        # Between a load's start of the index build and its end: who waits for that index
        # (`indexed`); None once built (or when no load builds one).
        self._first_index: list[Deferred[None]] | None = None

    def now(self) -> float:
        return self.clock.seconds()

    # ------------------------------------------------------------------ loading and the index

    def load(self, index: bool = True) -> Deferred[None]:
        """Read the library, articles, rules and past replies, and start building the index
        unless `index` is False (the CLI's import and export need no index). Fires once read:
        with `offload`, the index is built meanwhile off the reactor (5,000 answers take
        seconds), and whoever ranks waits for it through `indexed`; without, it is built."""
        return ensureDeferred(self._load(index))

    async def _load(self, index: bool) -> None:
        self.answers = {a.id: a for a in await self.store.list_answers(include_retired=True)}
        self.articles = {a.id: a for a in await self.store.list_articles(include_retired=True)}
        self.rules = await self.store.list_mode_rules()
        self.agent_shares = await self.store.agent_reviews()
        if index:
            self.examples = await self.store.answered_examples(EXAMPLES_LIMIT)
            if self._first_index is None:
                self._first_index = []
            maybeDeferred(self._rebuild).addBoth(self._first_built)

    def indexed(self) -> Deferred[None]:
        """Fires once the index of the loaded library is in use (at once, but between a
        load and the end of its index build): suggestions, searches and the automatic mode
        wait for it rather than rank on an empty index."""
        if self._first_index is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._first_index.append(waiter)
        return waiter

    @property
    def is_indexed(self) -> bool:
        """False between a load and the end of its index build (`indexed`)."""
        return self._first_index is None

    def _first_built(self, outcome: Any) -> None:
        if isinstance(outcome, Failure):  # ranked on the index there is (empty), not waited on
            log.error("answers: the index could not be built: %s", outcome.getErrorMessage())
        waiters, self._first_index = self._first_index or [], None
        for waiter in waiters:
            waiter.callback(None)

    def rebuild_now(self) -> None:
        """Rebuild the index from the library as it is now (inline)."""
        self._cancel_rebuild()
        self.ranker.rebuild(*self._sources())

    def _rebuild(self) -> Deferred[None]:
        """Rebuild the index from the library as it is now; fires once an index of it (or of
        a later state) is in use. With `offload`, off the reactor (5,000 answers and 5,000 past
        replies take seconds to fit), else inline. One build runs at a time (each swaps the
        index at its end), so an older index never replaces a newer one; the rebuilds asked
        for meanwhile make one more build after it, of the library as it is then."""
        if self.offload is None:
            self.rebuild_now()
            return succeed(None)
        self._cancel_rebuild()
        waiter: Deferred[None] = Deferred()
        self._waiting.append(waiter)
        if not self._building:
            self._build()
        return waiter

    def _build(self) -> None:
        assert self.offload is not None
        self._building = True
        waiters, self._waiting = self._waiting, []
        d = self.offload(self.ranker.rebuild, *self._sources())
        d.addBoth(self._built, waiters)

    def _built(self, outcome: Any, waiters: list[Deferred[None]]) -> None:
        self._building = False
        if self._waiting:
            self._build()
        for waiter in waiters:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(None)

    def _cancel_rebuild(self) -> None:
        if self._rebuild_call is not None and self._rebuild_call.active():
            self._rebuild_call.cancel()
        self._rebuild_call = None

    def _sources(self) -> tuple[list[Answer], list[Article], list[tuple[str, str]]]:
        return list(self.answers.values()), list(self.articles.values()), list(self.examples)

    def _rebuild_later(self) -> None:
        self._rebuild_call = None
        self._rebuild().addErrback(lambda f: log.error("answers: index rebuild failed: %s",
                                                       f.getErrorMessage()))

    def _changed(self, delay: float = REBUILD_DELAY) -> None:
        """Rebuild `delay` seconds from now, or sooner if a rebuild is already due sooner."""
        call = self._rebuild_call
        if call is not None and call.active():
            if call.getTime() <= self.clock.seconds() + delay:
                return
            call.cancel()
        self._rebuild_call = self.clock.callLater(delay, self._rebuild_later)

    def learn(self, answer_id: str, text: str) -> None:
        """A reply sent with a library answer: its customer text becomes an example, used
        from the next rebuild (at most `LEARN_REBUILD_DELAY` later)."""
        if answer_id in self.answers and text.strip():
            self.examples.insert(0, (answer_id, text))
            del self.examples[EXAMPLES_LIMIT:]
            self._changed(LEARN_REBUILD_DELAY)

    def stop(self) -> None:
        self._cancel_rebuild()

    # ------------------------------------------------------------------ the library

    def list_answers(self, include_retired: bool = False) -> list[Answer]:
        return [a for _, a in sorted(self.answers.items()) if include_retired or not a.retired]

    def get(self, answer_id: str) -> Answer | None:
        return self.answers.get(answer_id)

    def save_answer(self, data: Mapping[str, Any], author: str,
                    actor: str | None = None) -> Deferred[Answer]:
        """Create an answer or save a new version of it (the owner stays unless given);
        with `actor`, audited in the author's log too."""
        return ensureDeferred(self._save_answer(data, author, actor))

    async def _save_answer(self, data: Mapping[str, Any], author: str,
                           actor: str | None = None) -> Answer:
        answer_id = check_id(data.get("id"), "answer id")
        current = await self.store.get_answer(answer_id)
        owner = current.owner if current is not None else author
        answer = make_answer(data, owner=owner, now=self.now(),
                             version=(current.version + 1) if current is not None else 1)
        if current is not None and same_content(current, answer):
            return current
        await self._store_version(answer, author, self._audit(ANSWER_SAVED, answer, author,
                                                              actor))
        self.answers[answer.id] = answer
        self._changed()
        return answer

    def retire_answer(self, answer_id: str, author: str,
                      actor: str | None = None) -> Deferred[Answer]:
        return ensureDeferred(self._retire(answer_id, author, actor))

    async def _retire(self, answer_id: str, author: str, actor: str | None = None) -> Answer:
        current = await self.store.get_answer(answer_id)
        if current is None:
            raise InvalidValue(f"no such answer: {answer_id}")
        if current.retired:
            return current
        answer = replace(current, retired=True, version=current.version + 1,
                         updated_at=self.now())
        await self._store_version(answer, author, self._audit(ANSWER_RETIRED, answer, author,
                                                              actor))
        self.answers[answer.id] = answer
        self._changed()
        return answer

    def _audit(self, kind: str, answer: Answer, author: str,
               actor: str | None) -> list[Event]:
        if actor is None:
            return []
        return [Event(kind, answer.updated_at, None, author, actor, {
            "answer_id": answer.id, "version": answer.version, "title": answer.title})]

    async def _store_version(self, answer: Answer, author: str,
                             events: list[Event] | None = None) -> None:
        try:
            await self.store.save_answer(answer, version_of(answer, author), events or [])
        except Exception:
            now = await self.store.get_answer(answer.id)
            if now is not None and now.version >= answer.version:  # two saves raced
                raise InvalidValue(f"answer {answer.id} was saved by someone else meanwhile "
                                   f"(version {now.version}); reload it and save again") from None
            raise

    def history(self, answer_id: str) -> Deferred[list[AnswerVersion]]:
        return self.store.answer_versions(answer_id)

    def import_answers(self, lines: Iterable[str], author: str, actor: str | None = None,
                       first_line: int = 1, check_only: bool = False) -> Deferred[Imported]:
        """Save every answer of a JSON Lines file (created, updated, unchanged), or none
        when a line is wrong (InvalidValue lists the first errors); `check_only`: check,
        save nothing (the counts say what an import would do)."""
        return ensureDeferred(self._import_answers(lines, author, actor, first_line,
                                                   check_only))

    async def _import_answers(self, lines: Iterable[str], author: str,
                              actor: str | None = None, first_line: int = 1,
                              check_only: bool = False) -> Imported:
        objs, errors = parse_lines(lines, "answer", first_line)
        seen = set()
        for obj in objs:
            n = obj.pop("_line")
            obj.pop("version", None)  # versions are the library's, not the file's
            try:
                make_answer(obj, owner=author, now=0.0)
            except InvalidValue as exc:
                errors.append(f"line {n}: {exc}")
                continue
            if obj["id"] in seen:
                errors.append(f"line {n}: answer {obj['id']} appears twice")
            seen.add(obj["id"])
        if errors:
            raise InvalidValue("; ".join(errors[:20]))
        created = updated = unchanged = 0
        if check_only:
            for obj in objs:
                before = self.answers.get(obj["id"])
                if before is None:
                    created += 1
                elif same_content(before, make_answer(obj, owner=before.owner, now=0.0)):
                    unchanged += 1
                else:
                    updated += 1
            return Imported(created, updated, unchanged)
        for obj in objs:
            before = self.answers.get(obj["id"])
            after = await self._save_answer(obj, author, actor)
            if before is None:
                created += 1
            elif after.version != before.version:
                updated += 1
            else:
                unchanged += 1
        return Imported(created, updated, unchanged)

    def export_answers(self, include_retired: bool = True) -> list[str]:
        return [json.dumps(answer_json(a), ensure_ascii=False)
                for a in self.list_answers(include_retired)]

    # ------------------------------------------------------------------ knowledge base

    def list_articles(self, include_retired: bool = False) -> list[Article]:
        return [a for _, a in sorted(self.articles.items()) if include_retired or not a.retired]

    def save_article(self, data: Mapping[str, Any]) -> Deferred[Article]:
        return ensureDeferred(self._save_article(data))

    async def _save_article(self, data: Mapping[str, Any]) -> Article:
        article = make_article(data, now=self.now())
        await self.store.put_article(article)
        self.articles[article.id] = article
        self._changed()
        return article

    def import_articles(self, lines: Iterable[str]) -> Deferred[Imported]:
        return ensureDeferred(self._import_articles(lines))

    async def _import_articles(self, lines: Iterable[str]) -> Imported:
        objs, errors = parse_lines(lines, "article")
        for obj in objs:
            n = obj.pop("_line")
            try:
                make_article(obj, now=0.0)
            except InvalidValue as exc:
                errors.append(f"line {n}: {exc}")
        if errors:
            raise InvalidValue("; ".join(errors[:20]))
        created = updated = 0
        for obj in objs:
            created, updated = ((created, updated + 1) if obj["id"] in self.articles
                                else (created + 1, updated))
            await self._save_article(obj)
        return Imported(created, updated, 0)

    def export_articles(self, include_retired: bool = True) -> list[str]:
        return [json.dumps(article_json(a), ensure_ascii=False)
                for a in self.list_articles(include_retired)]

    def help_found(self, query: str, limit: int = 10) -> Deferred[list[Article]]:
        """`help_search` once the index is in use (`indexed`)."""
        return self.indexed().addCallback(lambda _: self.help_search(query, limit))

    def help_search(self, query: str, limit: int = 10) -> list[Article]:
        """Articles for a /help visitor's words (all of them, by category, without words)."""
        if not query.strip():
            return sorted(self.list_articles(), key=lambda a: (a.category, a.question))[:limit]
        found: list[Suggestion] = self.ranker.search(query, limit=limit, kinds=(ARTICLE,))
        return [self.articles[s.id] for s in found if s.id in self.articles]

    def record_help(self, article_id: str, helped: bool | None) -> Deferred[None]:
        if article_id not in self.articles or self.articles[article_id].retired:
            raise InvalidValue(f"no such article: {article_id}")
        return self.store.record_help(article_id, self.now(), helped)

    def deflections(self) -> Deferred[list[Deflection]]:
        """Per article and its category: /help views and the visitors who said it answered
        their question (those who did not need to write)."""
        return self.store.deflections()

    # ------------------------------------------------------------------ response modes

    def rule_for(self, queue: str, category: str | None) -> ResponseRule:
        return rule_for(self.rules, queue, category)

    def put_rule(self, data: Mapping[str, Any]) -> Deferred[ResponseRule]:
        return ensureDeferred(self._put_rule(data))

    async def _put_rule(self, data: Mapping[str, Any]) -> ResponseRule:
        rule = make_rule(data)
        await self.store.put_mode_rule(rule)
        self.rules = [r for r in self.rules if (r.queue, r.category) != (rule.queue,
                                                                          rule.category)]
        self.rules.append(rule)
        return rule

    def remove_rule(self, queue: str, category: str) -> Deferred[bool]:
        return ensureDeferred(self._remove_rule(queue, category))

    async def _remove_rule(self, queue: str, category: str) -> bool:
        removed = await self.store.remove_mode_rule(queue, category)
        self.rules = [r for r in self.rules if (r.queue, r.category) != (queue, category)]
        return removed

    def agent_share(self, agent_id: str | None) -> float | None:
        return self.agent_shares.get(agent_id) if agent_id else None

    def set_agent_share(self, agent_id: str, share: float | None) -> Deferred[None]:
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                                  or not 0 <= share <= 1):
            raise InvalidValue("a review share is a number from 0 to 1")
        check_id(agent_id, "agent id")
        d = self.store.put_agent_review(agent_id, share)

        def done(_: Any) -> None:
            if share is None:
                self.agent_shares.pop(agent_id, None)
            else:
                self.agent_shares[agent_id] = float(share)
        return d.addCallback(done)

    # ------------------------------------------------------------------ placeholders

    @staticmethod
    def values(task: Task, customer_name: str | None, agent_name: str | None
               ) -> dict[str, Any]:
        return values_for(customer_name=customer_name, request=task.attributes.get("request"),
                          agent_name=agent_name, deadline=format_deadline(task.deadline),
                          attributes=task.attributes)
