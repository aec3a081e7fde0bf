"""Review: what happens to an outgoing answer: the reply box's helpers (library search, the top
three suggestions, filled for the task), the quality review (a sampled share of answers held
for a supervisor who approves, edits or rejects them and scores them on a checklist) and the
automatic mode (a new e-mail answered without an agent).

Sits in the service layer over `Mail` (which builds and queues replies), the `AnswerStore`
port and the router. What it promises:
- Every answer that leaves records its mode and the library answer used (`email.queued` data
  `mode`, `answer_id`), so reports can give the share of each mode and their reopen rates.
- A held answer does not leave until a supervisor approves or edits it; the decision, its
  checklist score, the mail it sends and the task's events commit together (`reply.held`,
  `reply.reviewed` in the task's trail). A rejected answer never leaves: an automatic answer's
  task then goes to an agent; an agent's task stays where it is (the rejection and the
  reviewer's note are in its trail).
- Listeners registered with `listen_held` and `listen_decided` (the console tells the
  supervisors, and the agent whose answer it was) hear only after the commit; a failing
  listener undoes nothing.
- Never an automatic answer to automatic mail (RFC 3834), to a null sender, or to spam.
- Automatic mode (after the new task is committed, before routing): below the rule's threshold,
  or with a placeholder it cannot fill, the task is routed as usual; sampled for review, the
  answer is held and the task waits for the supervisor; otherwise the answer is sent and the
  task completed by the system, in one transaction. If that write fails, the task is routed.
  The customer's reply reopens the task for a person, as for any completed e-mail.
- Sampling draws from an injected `random()` source (deterministic under test).
- Who may ask, checked here for every caller (the console only translates the refusal):
  suggestions, and a search filled for a task, are for the agent who holds the task or is
  offered it (`Forbidden` otherwise; a supervisor, `any_task=True`, may search on any open task);
  an agent's reply is for an e-mail task they hold (assigned or in wrap-up).
- Replies go through the review: `Replies` (what the console is given) sends an agent's answer
  through `Review.reply` when the answer library is wired, else straight through `Mail`, after
  the same checks.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, fail

from dispatcher.domain import events as ev
from dispatcher.domain.answers import (
    DEFAULT_CHECKLIST,
    HELD,
    Decision,
    Plan,
    ResponseMode,
    ReviewItem,
    Target,
    automatic_plan,
    fill,
    review_share,
    sampled,
    score,
)
from dispatcher.domain.errors import DomainError, Forbidden, InvalidValue, UnknownTask
from dispatcher.domain.events import ANSWER_AUTOMATIC, REPLY_HELD, REPLY_REVIEWED
from dispatcher.domain.tasks import Channel, Task, TaskState

from .answers import Library
from .mail import html_to_text
from .ports import AnswerStore, Changes, Store
from .suggest import ANSWER, TOP, query_text

log = logging.getLogger(__name__)

AUTOMATIC_DISPOSITION = "answered_automatically"
SEARCH_LIMIT = 10
MAX_NOTE_CHARS = 2000
MAX_ASKED_CHARS = 20_000  # of the customer's message shown beside a held answer


def supervisor_actor(sub: str) -> str:
    return f"supervisor:{sub}"


@dataclass(frozen=True, slots=True)
class Asked:
    """What the customer wrote last before a held answer: what a reviewer reads it against.
    `text` is plain text (HTML reduced to text), at most MAX_ASKED_CHARS."""

    task_id: str
    request: str | None
    at: float | None
    sender: str
    subject: str
    text: str


@dataclass(frozen=True, slots=True)
class Offered:
    """A library answer filled for one task, as the reply box shows it."""

    answer_id: str
    title: str
    score: float
    text: str
    html: str
    missing: tuple[str, ...]


class Review:
    def __init__(self, library: Library, mail: Any, answer_store: AnswerStore, store: Store,
                 assignment: Any, clock: Any, draw: Callable[[], float] | None = None,
                 new_id: Callable[[], str] | None = None,
                 checklist: Mapping[str, int] | None = None) -> None:
        self.library = library
        self.mail = mail
        self.answer_store = answer_store
        self.store = store
        self.assignment = assignment
        self.router = assignment.router
        self.clock = clock
        self.draw = draw or random.random
        self.new_id = new_id or (lambda: uuid.uuid4().hex)
        self.checklist = dict(checklist or DEFAULT_CHECKLIST)
        self._on_held: list[Callable[[ReviewItem], None]] = []
        self._on_decided: list[Callable[[ReviewItem], None]] = []

    def listen_held(self, fn: Callable[[ReviewItem], None]) -> None:
        """Call `fn(item)` with each held answer once committed (the console tells the
        supervisors). A failing listener is logged and undoes nothing."""
        self._on_held.append(fn)

    def listen_decided(self, fn: Callable[[ReviewItem], None]) -> None:
        """Call `fn(item)` with each decided answer once committed (the console tells the agent
        whose answer it was). A failing listener is logged and undoes nothing."""
        self._on_decided.append(fn)

    def _tell(self, listeners: list[Callable[[ReviewItem], None]], item: ReviewItem,
              what: str) -> None:
        for fn in listeners:
            try:
                fn(item)
            except Exception:
                log.exception("review: %s listener failed", what)

    def now(self) -> float:
        return self.clock.seconds()

    # ------------------------------------------------------------------ the reply box

    def mode_of(self, task: Task) -> ResponseMode:
        return self.library.rule_for(task.queue, _category(task)).mode

    def suggest(self, task_id: str, agent_id: str,
                limit: int = TOP) -> Deferred[list[Offered]]:
        """The best answers for the task's last customer message, filled for it; only for the
        agent who holds the task or is offered it (`Forbidden` otherwise)."""
        return ensureDeferred(self._suggest(task_id, agent_id, limit))

    async def _suggest(self, task_id: str, agent_id: str, limit: int) -> list[Offered]:
        task = self._theirs(task_id, agent_id)
        text = await self._customer_text(task)
        await self.library.indexed()
        found = self.library.ranker.rank(text, task.queue, _category(task), limit, (ANSWER,))
        return await self._offered(task, agent_id, [(s.id, s.score) for s in found])

    def search(self, query: str, task_id: str | None, agent_id: str | None,
               limit: int = SEARCH_LIMIT, any_task: bool = False) -> Deferred[list[Offered]]:
        """Library answers for typed words, filled for the task when one is given: a task the
        agent holds or is offered, or with `any_task` (a supervisor) any open task."""
        return ensureDeferred(self._search(query, task_id, agent_id, limit, any_task))

    async def _search(self, query: str, task_id: str | None, agent_id: str | None,
                      limit: int, any_task: bool = False) -> list[Offered]:
        task = None
        if task_id:
            task = self._live(task_id) if any_task else self._theirs(task_id, agent_id)
        queue = task.queue if task else None
        category = _category(task) if task else None
        await self.library.indexed()
        found = self.library.ranker.search(query, queue, category, limit, (ANSWER,))
        if task is None:
            return [Offered(s.id, s.title, s.score, a.text, a.html, ())
                    for s in found if (a := self.library.get(s.id)) is not None]
        return await self._offered(task, agent_id, [(s.id, s.score) for s in found])

    async def _offered(self, task: Task, agent_id: str | None,
                       scored: list[tuple[str, float]]) -> list[Offered]:
        values = await self._values(task, agent_id)
        out = []
        for answer_id, points in scored:
            answer = self.library.get(answer_id)
            if answer is None:
                continue
            text = fill(answer.text, values, Target.TEXT)
            body = fill(answer.html, values, Target.HTML)
            out.append(Offered(answer.id, answer.title, points, text.text, body.text,
                               tuple(dict.fromkeys(text.missing + body.missing))))
        return out

    async def _values(self, task: Task, agent_id: str | None) -> dict[str, Any]:
        customer = (await self.store.get_customer(task.customer_id)
                    if task.customer_id else None)
        agent = self.router.agents.get(agent_id) if agent_id else None
        agent_name = agent.name if agent is not None else (
            None if agent_id else self.mail.policy.from_name)
        return self.library.values(task, customer.name if customer else None, agent_name)

    async def _customer_text(self, task: Task) -> str:
        messages = await self.store.mail_messages(task.id)
        inbound = [m for m in messages if m.direction == "in"]
        if not inbound:
            return query_text(str(task.attributes.get("subject", "")),
                              str(task.attributes.get("preview", "")))
        last = inbound[-1]
        return query_text(last.subject, last.text or _text_of(last.html))

    def _live(self, task_id: str) -> Task:
        task = self.router.tasks.get(task_id)
        if task is None:
            raise UnknownTask(task_id)
        return task

    def _theirs(self, task_id: str, agent_id: str | None) -> Task:
        """The open task if `agent_id` holds it or is offered it now, else `Forbidden`
        (`UnknownTask` if no such task is open)."""
        task = self._live(task_id)
        if agent_id is None or not (
                task.agent_id == agent_id or _offered_to(self.router, agent_id, task_id)):
            raise Forbidden(agent_id or "nobody", f"task {task_id}")
        return task

    # ------------------------------------------------------------------ an agent's reply

    def reply(self, agent_id: str, task_id: str, text: str, answer_id: str | None = None,
              mode: str | None = None, html: str | None = None, reply_all: bool = False,
              quote: bool = True, uploads: tuple[str, ...] = ()) -> Deferred[dict[str, Any]]:
        """Send an agent's reply, or hold it for review if sampled. Fires with
        `{"held": item_id}` or `{"message": message_id}` once committed. How it is sent
        (`reply_all`, `quote`, the agent's `uploads`) is kept with a held reply and applied
        when it is approved."""
        options = {"reply_all": bool(reply_all), "quote": bool(quote),
                   "uploads": list(uploads)}
        return ensureDeferred(self._reply(agent_id, task_id, text, answer_id, mode, html,
                                          options))

    async def _reply(self, agent_id: str, task_id: str, text: str, answer_id: str | None,
                     mode: str | None, html: str | None = None,
                     options: dict[str, Any] | None = None) -> dict[str, Any]:
        options = options or {}
        task = held_by(self.router, task_id, agent_id)
        rule = self.library.rule_for(task.queue, _category(task))
        used = _mode(mode, answer_id, rule.mode)
        if answer_id is not None and self.library.get(answer_id) is None:
            raise InvalidValue(f"no such answer: {answer_id}")
        share = review_share(rule, self.library.agent_share(agent_id))
        if sampled(share, self.draw()):
            item = ReviewItem(id=self.new_id(), task_id=task.id, agent_id=agent_id, mode=used,
                              answer_id=answer_id, text=text, html=html or "",
                              queue=task.queue, created_at=self.now())
            await self._hold(item, ev.agent_actor(agent_id), options)
            return {"held": item.id}
        message = await self.mail.reply(task_id, agent_id, text, html=html, mode=used.value,
                                        answer_id=answer_id,
                                        reply_all=options.get("reply_all", False),
                                        quote=options.get("quote", True),
                                        uploads=tuple(options.get("uploads", ())))
        await self._learn(task, answer_id)
        return {"message": message.id}

    async def _hold(self, item: ReviewItem, actor: str,
                    options: dict[str, Any] | None = None) -> None:
        event = ev.Event(REPLY_HELD, item.created_at, item.task_id, actor=actor,
                         data={"item": item.id, "agent_id": item.agent_id,
                               "mode": item.mode.value, "answer_id": item.answer_id,
                               "options": options or None})
        await self.answer_store.hold_review(item, [event])
        self._tell(self._on_held, item, "held")

    async def _learn(self, task: Task, answer_id: str | None) -> None:
        if answer_id is not None:
            self.library.learn(answer_id, await self._customer_text(task))

    # ------------------------------------------------------------------ the supervisor

    def held(self, limit: int = 100) -> Deferred[list[ReviewItem]]:
        return self.answer_store.list_reviews(HELD, limit)

    def asked(self, item: ReviewItem) -> Deferred[Asked]:
        """The customer's last message before the held answer (from the task's attributes
        when the thread has none)."""
        return ensureDeferred(self._asked(item))

    async def _asked(self, item: ReviewItem) -> Asked:
        task = self.router.tasks.get(item.task_id) or await self.store.find_mail_task(
            task_id=item.task_id)
        attrs = task.attributes if task is not None else {}
        request = attrs.get("request") if isinstance(attrs.get("request"), str) else None
        inbound = [m for m in await self.store.mail_messages(item.task_id, content=False)
                   if m.direction == "in" and m.created_at <= item.created_at]
        if not inbound:
            return Asked(item.task_id, request, None, str(attrs.get("from") or ""),
                         str(attrs.get("subject") or ""),
                         str(attrs.get("preview") or "")[:MAX_ASKED_CHARS])
        last = inbound[-1]
        return Asked(item.task_id, request, last.created_at, last.from_addr or last.peer or "",
                     last.subject, (last.text or _text_of(last.html))[:MAX_ASKED_CHARS])

    def _decided(self, item: ReviewItem) -> None:
        self._tell(self._on_decided, item, "decided")

    def figures(self) -> Deferred[list[Any]]:
        return self.answer_store.review_figures()

    def decide(self, item_id: str, reviewer: str, decision: str,
               marks: Mapping[str, Any] | None = None, text: str | None = None,
               note: str = "") -> Deferred[ReviewItem]:
        """Approve (send as written), edit (send `text`) or reject (never send) a held
        answer, with the checklist ticks `marks`; fires with the decided item."""
        return ensureDeferred(self._decide(item_id, reviewer, decision, marks or {}, text,
                                           note))

    async def _decide(self, item_id: str, reviewer: str, decision: str,
                      marks: Mapping[str, Any], text: str | None, note: str) -> ReviewItem:
        try:
            verdict = Decision(decision)
        except ValueError:
            raise InvalidValue("decision is approved, edited or rejected") from None
        if len(note) > MAX_NOTE_CHARS:
            raise InvalidValue(f"a note has at most {MAX_NOTE_CHARS} chars")
        points, most = score(self.checklist, marks)
        item = await self.answer_store.get_review(item_id)
        if item is None:
            raise InvalidValue(f"no such review item: {item_id}")
        if item.state != HELD:
            raise InvalidValue(f"review item {item_id} was already {item.state}")
        if verdict is Decision.EDITED and not (text or "").strip():
            raise InvalidValue("an edit gives the text to send")
        final = text if verdict is Decision.EDITED else item.text
        now = self.now()
        decided = replace(item, state=verdict.value, reviewer=reviewer, decided_at=now,
                          score=points, max_score=most, checklist=dict(marks),
                          final_text=None if verdict is Decision.REJECTED else final, note=note)
        actor = supervisor_actor(reviewer)
        reviewed = ev.Event(REPLY_REVIEWED, now, item.task_id, actor=actor, data={
            "item": item.id, "decision": verdict.value, "score": points, "max_score": most,
            "checklist": dict(marks), "reviewer": reviewer, "agent_id": item.agent_id,
            "mode": item.mode.value, "answer_id": item.answer_id, "note": note})
        automatic = item.agent_id is None
        if verdict is Decision.REJECTED:
            await self.answer_store.decide_review(decided, [], Changes(events=[reviewed]))
            self._decided(decided)
            if automatic:
                await self._route_back(item.task_id)
            return decided
        options = await self._options(item)
        out = await self.mail.compose_reply(
            item.task_id, ev.SYSTEM if automatic else ev.agent_actor(item.agent_id), final,
            item.html if verdict is Decision.APPROVED and item.html else None,
            mode=item.mode.value, answer_id=item.answer_id,
            reply_all=bool(options.get("reply_all")), quote=options.get("quote", True),
            uploads=tuple(options.get("uploads") or ()), agent_id=item.agent_id)
        changes = Changes(events=[reviewed, out.event], outbox=[out.outbox])
        if automatic:
            task = await self.store.find_mail_task(task_id=item.task_id)
            if task is None:
                raise UnknownTask(item.task_id)
            if item.task_id in self.router.tasks or task.state is not TaskState.QUEUED:
                raise Forbidden(reviewer, f"task {item.task_id}: an agent has it now")
            changes.tasks.append(_completed(task, now))
            changes.events.append(_completion(task, now))
        await self.answer_store.decide_review(decided, [out.message], changes)
        self._decided(decided)
        await self.mail.used(tuple(options.get("uploads") or ()))
        return decided

    async def _options(self, item: ReviewItem) -> dict[str, Any]:
        """How the held reply was to be sent (kept in its `reply.held` event)."""
        for e in reversed(await self.store.task_events(item.task_id)):
            if e.kind == REPLY_HELD and e.data.get("item") == item.id:
                return dict(e.data.get("options") or {})
        return {}

    async def _route_back(self, task_id: str) -> None:
        """A rejected automatic answer: the task goes to an agent as any new e-mail."""
        if task_id in self.router.tasks:
            return
        task = await self.store.find_mail_task(task_id=task_id)
        if task is None or task.state is not TaskState.QUEUED:
            return
        route(self.assignment, task, self.now())

    # ------------------------------------------------------------------ automatic mode

    def may_take(self, task: Task) -> bool:
        """For `Mail`, before a new task's commit: whether its rule is automatic (else it is
        routed in its intake's transaction and `automatic` is not asked)."""
        return self.library.rule_for(task.queue, _category(task)).mode is ResponseMode.AUTOMATIC

    def automatic(self, task: Task, inbound: Any) -> bool:
        """For `Mail` (wired with `Mail.answer_with`): whether the new, committed task is
        taken by the automatic mode (then it must not be routed). Decided now, from memory;
        the write follows. While a start's index is being built, a task it would rank is
        taken, and decided on once the index is in use (`_automatic_later`)."""
        rule = self.library.rule_for(task.queue, _category(task))
        if rule.mode is not ResponseMode.AUTOMATIC:
            return False
        never = _never_automatic(task, inbound)
        if never is not None:
            self._record_plan(task, ev.Event(ANSWER_AUTOMATIC, self.now(), task.id, data={
                "plan": Plan.AGENT.value, "reason": never, "answer_id": None, "score": 0.0,
                "threshold": rule.threshold}))
            return False
        if not self.library.is_indexed:
            self.library.indexed().addCallback(lambda _: self._automatic_later(task, inbound))
            return True
        text = query_text(inbound.subject, inbound.text or _text_of(inbound.html))
        found = self.library.ranker.rank(text, task.queue, _category(task), 1, (ANSWER,))
        answer = self.library.get(found[0].id) if found else None
        missing: tuple[str, ...] = ()
        filled_text = filled_html = ""
        if answer is not None:
            values = self.library.values(task, inbound.from_name or None,
                                         self.mail.policy.from_name)
            t, h = fill(answer.text, values, Target.TEXT), fill(answer.html, values, Target.HTML)
            filled_text, filled_html = t.text, h.text
            missing = tuple(dict.fromkeys(t.missing + h.missing))
        best = (answer.id, found[0].score) if answer is not None else None
        plan = automatic_plan(rule, best, missing, self.draw())
        event = ev.Event(ANSWER_AUTOMATIC, self.now(), task.id, data={
            "plan": plan.plan.value, "reason": plan.reason, "answer_id": plan.answer_id,
            "score": plan.score, "threshold": rule.threshold})
        if plan.plan is Plan.AGENT:
            self._record_plan(task, event)
            return False
        snapshot = task.snapshot()
        work = (self._send_automatic(task, plan.answer_id, filled_text, filled_html, event, text)
                if plan.plan is Plan.SEND else
                self._hold_automatic(task, plan.answer_id, filled_text, filled_html, event))
        d = ensureDeferred(work)
        d.addErrback(self._automatic_failed, snapshot)
        return True

    def _automatic_later(self, task: Task, inbound: Any) -> None:
        """`automatic` once the index is built, for a task that came in before: routed when
        the automatic mode leaves it to the agents."""
        try:
            taken = self.automatic(task, inbound)
        except Exception:
            log.exception("automatic: could not decide on %s: routed", task.id)
            taken = False
        if not taken:
            route(self.assignment, task, self.now())

    def _record_plan(self, task: Task, event: ev.Event) -> None:
        self.store.record(Changes(events=[event])).addErrback(
            lambda f: log.warning("automatic: could not record the plan of %s: %s", task.id,
                                  f.getErrorMessage()))

    async def _send_automatic(self, task: Task, answer_id: str, text: str, html: str,
                              event: ev.Event, customer_text: str) -> None:
        now = self.now()
        out = await self.mail.compose_reply(task.id, ev.SYSTEM, text, html or None,
                                            mode=ResponseMode.AUTOMATIC.value,
                                            answer_id=answer_id)
        changes = Changes(tasks=[_completed(task, now)],
                          events=[event, out.event, _completion(task, now)],
                          outbox=[out.outbox])
        await self.store.add_mail([out.message], changes)
        self.library.learn(answer_id, customer_text)

    async def _hold_automatic(self, task: Task, answer_id: str, text: str, html: str,
                              event: ev.Event) -> None:
        await self.store.record(Changes(events=[event]))
        item = ReviewItem(id=self.new_id(), task_id=task.id, agent_id=None,
                          mode=ResponseMode.AUTOMATIC, answer_id=answer_id, text=text,
                          html=html, queue=task.queue, created_at=self.now())
        await self._hold(item, ev.SYSTEM)

    def _automatic_failed(self, failure: Any, task: Task) -> None:
        log.error("automatic: could not answer task %s (%s); routing it to an agent",
                  task.id, failure.getErrorMessage())
        if task.id not in self.router.tasks:
            route(self.assignment, task, self.now())


class Replies:
    """Where an agent's e-mail answer goes: through the quality review (`Review.reply`, which
    holds a sampled share) when the answer library is wired, else straight through `Mail`.
    Either way only for an e-mail task the agent holds. `send` fires with `{"held": item_id}`
    or `{"message": message_id}` once committed."""

    def __init__(self, mail: Any, review: Review | None = None) -> None:
        self.mail = mail
        self.review = review

    def send(self, agent_id: str, task_id: str, text: str, **how: Any
             ) -> Deferred[dict[str, Any]]:
        try:
            held_by(self.mail.router, task_id, agent_id)
        except DomainError as exc:
            return fail(exc)
        if self.review is not None:
            return self.review.reply(agent_id, task_id, text, **how)
        d = self.mail.reply(task_id, agent_id, text, **how)
        d.addCallback(lambda message: {"message": message.id})
        return d


def held_by(router: Any, task_id: str, agent_id: str) -> Task:
    """The open e-mail task `agent_id` holds (assigned or in wrap-up): `Forbidden` if it is
    not theirs, `InvalidValue` if it is not an e-mail."""
    task = router.tasks.get(task_id)
    if task is None or task.agent_id != agent_id or task.state not in (
            TaskState.ASSIGNED, TaskState.WRAP_UP):
        raise Forbidden(agent_id, f"task {task_id}")
    if task.channel is not Channel.EMAIL:
        raise InvalidValue("replies are for e-mail tasks")
    return task


def _offered_to(router: Any, agent_id: str, task_id: str) -> bool:
    agent = router.agents.get(agent_id)
    offer = router.offers.get(agent.offer_id) if agent is not None and agent.offer_id else None
    return offer is not None and offer.task_id == task_id


@dataclass(frozen=True)
class AnswerServices:
    """What the edges get of the answers (EdgeContext.answers)."""

    library: Library
    review: Review


def route(assignment: Any, task: Task, now: float) -> None:
    """Give a stored, unrouted task to the router (as `Mail` does for a new e-mail)."""
    fresh = replace(task.snapshot(), state=TaskState.QUEUED, agent_id=None, offer_id=None,
                    offer_expires_at=None)
    try:
        outcome = assignment.router.submit(fresh, now)
    except Exception:
        log.exception("could not route task %s", task.id)
        return
    assignment.apply(outcome).addErrback(lambda f: None)  # logged by apply


def _completed(task: Task, now: float) -> Task:
    done = task.snapshot()
    done.move(TaskState.ASSIGNED, now)
    done.move(TaskState.COMPLETED, now)
    return done


def _completion(task: Task, now: float) -> ev.Event:
    return ev.Event(ev.TASK_COMPLETED, now, task.id, data={
        "disposition": AUTOMATIC_DISPOSITION, "mode": ResponseMode.AUTOMATIC.value})


def _never_automatic(task: Task, inbound: Any) -> str | None:
    """Why this e-mail must never get an automatic answer, if it must not: automatic mail
    (RFC 3834: no loops with other robots), a null sender, spam."""
    if getattr(inbound, "auto_generated", False):
        return "automatic message (RFC 3834)"
    if getattr(inbound, "suppress_auto", False):
        return "the sender asked for no automatic replies (X-Auto-Response-Suppress)"
    if not getattr(inbound, "envelope_from", "") or not getattr(inbound, "from_address", ""):
        return "no sender to answer"
    spam = task.attributes.get("spam")
    if isinstance(spam, dict) and spam.get("spam"):
        return "spam"
    return None


def _category(task: Task | None) -> str | None:
    if task is None:
        return None
    value = task.attributes.get("category")
    return value if isinstance(value, str) and value else None


def _mode(given: str | None, answer_id: str | None, rule_mode: ResponseMode) -> ResponseMode:
    """The mode an agent's reply was written in: as the console says (never automatic), else
    free without a library answer, else the rule's."""
    if given is not None:
        try:
            mode = ResponseMode(given)
        except ValueError:
            raise InvalidValue("mode is free, assisted or suggested") from None
        if mode is ResponseMode.AUTOMATIC:
            raise InvalidValue("an agent's reply is not automatic")
        return mode
    if answer_id is None:
        return ResponseMode.FREE
    return (ResponseMode.ASSISTED if rule_mode in (ResponseMode.FREE, ResponseMode.AUTOMATIC)
            else rule_mode)


def _text_of(html: str) -> str:
    return html_to_text(html or "")
