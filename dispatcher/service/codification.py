"""Codification: a category and a spam verdict for each new e-mail, before it is stored and
routed; agents' corrections; spam parked and released; the classifier trained off the reactor.

Sits in the service layer. `Mail` calls `Codification.codify(mail, task)` for every message that
opens a task (the runtime wires it with `Mail.codify_with`); what it promises:

- Spam: the scorer the e-mail edge registered (`set_scorer`, SpamAssassin's spamd) gives a
  verdict that becomes the task's `spam` attribute (score, threshold, rules, or `scored: false`
  with the reason when the scorer failed or is absent: the mail is never lost for it). Spam is
  parked in the spam queue (a pull queue with no members, created when missing), never
  acknowledged, and keeps the queue it would have gone to; `parked` lists what waits there
  (newest first, from the router's memory: no database read); `release` (supervisors) sends it
  there, routed afresh with its original age, in one commit, audited (`spam.released`).
- Category: a form's pre-qualification first, then the rules in order, then the trained
  classifier when its confidence reaches `min_confidence`. The category's queue, priority,
  skills and attributes apply to the task (a form's explicit queue and priority win); the
  decision is the `task.categorised` event (category, source, confidence, previous).
- Learning: an agent holding a task may correct its category (`correct`); the correction is an
  event and a training example. Completed e-mail tasks with a category are examples too. The
  classifier is retrained after `retrain_after` new examples or every `retrain_seconds`, in a
  worker thread (`run_in_thread`), never on the reactor; predictions use the last trained model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from dispatcher.domain import events as ev
from dispatcher.domain.categories import (
    FROM_AGENT,
    FROM_CLASSIFIER,
    FROM_FORM,
    Categorised,
    Category,
    CategoryRule,
    RuleSet,
    Sample,
    by_rules,
    check_name,
    check_rule,
)
from dispatcher.domain.deadlines import ALWAYS_OPEN, parse_rule
from dispatcher.domain.errors import Forbidden, InvalidValue, UnknownQueue
from dispatcher.domain.events import SPAM_RELEASED, SPAM_SCORED, TASK_CATEGORISED
from dispatcher.domain.queues import Mode, Queue
from dispatcher.domain.routing import Outcome
from dispatcher.domain.tasks import MAX_PRIORITY, MIN_PRIORITY, Channel, Task, TaskState

from .assignment import Assignment
from .mail import InboundMail, html_to_text
from .ports import Changes, CodificationStore, Store, TrainingExample

log = logging.getLogger(__name__)

# Sources of training examples.
EXAMPLE_AGENT, EXAMPLE_DISPOSITION, EXAMPLE_IMPORT = "agent", "disposition", "import"
# Dispositions that say nothing about what the mail was about.
NOT_LEARNT = frozenset({"redirected", "reminder", "spam"})
SPAM_CATEGORY = "spam"
# Web form fields kept on the task (attribute `form`): what an agent needs to call back.
FORM_ATTRIBUTES = frozenset({"name", "phone", "product", "request_type", "callback"})

DEFAULT_MIN_CONFIDENCE = 0.4  # of 5 categories, chance is 0.2
DEFAULT_RETRAIN_AFTER = 20
DEFAULT_RETRAIN_SECONDS = 3600.0
DEFAULT_REFRESH_SECONDS = 60.0
DEFAULT_MAX_EXAMPLES = 20_000
MIN_EXAMPLES = 6  # fewer than this (or one category only): no classifier
MAX_EXAMPLE_CHARS = 20_000
EVALUATION_FOLDS = 5
MAX_CHAR_FEATURES = 20_000
REGULARISATION = 10.0  # LogisticRegression's C: little regularisation, texts are short


@dataclass(frozen=True, slots=True)
class SpamVerdict:
    """What the spam scorer said. `scored` False: it could not say (`error` says why)."""

    scored: bool
    spam: bool = False
    score: float | None = None
    threshold: float | None = None
    rules: tuple[str, ...] = ()
    error: str | None = None

    def attribute(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scored": self.scored, "spam": self.spam}
        if self.scored:
            out.update(score=self.score, threshold=self.threshold, rules=list(self.rules))
        else:
            out["error"] = self.error
        return out


UNSCORED = SpamVerdict(False, error="no spam scorer configured")
PARKED_LIMIT = 200  # parked spam listed at once (the count covers them all)
PARKED_PREVIEW_CHARS = 300


@dataclass(frozen=True, slots=True)
class Parked:
    """A mail parked as spam, as a supervisor sees it before releasing it."""

    task_id: str
    request: str | None
    created_at: float
    sender: str
    subject: str
    preview: str
    score: float | None
    threshold: float | None
    rules: tuple[str, ...]
    queue: str | None  # where it would have gone (and goes when released)


@dataclass(frozen=True, slots=True)
class SpamList:
    total: int
    tasks: tuple[Parked, ...]  # newest first, at most the limit asked for


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def parked_of(task: Task) -> Parked:
    """What the task tells of itself; its preview only when its attributes hold one (stored
    before previews had a column: `Codification.parked` reads the others')."""
    attrs = task.attributes
    spam = attrs.get("spam") if isinstance(attrs.get("spam"), dict) else {}
    score, threshold = spam.get("score"), spam.get("threshold")
    return Parked(
        task_id=task.id, request=attrs.get("request") if isinstance(attrs.get("request"), str)
        else None, created_at=task.created_at, sender=_text(attrs.get("from"), 320),
        subject=_text(attrs.get("subject"), 200),
        preview=_text(attrs.get("preview"), PARKED_PREVIEW_CHARS),
        score=float(score) if isinstance(score, (int, float)) else None,
        threshold=float(threshold) if isinstance(threshold, (int, float)) else None,
        rules=tuple(str(r) for r in spam.get("rules") or ())[:50],
        queue=spam.get("queue") if isinstance(spam.get("queue"), str) else None)


@dataclass(frozen=True)
class CodificationPolicy:
    spam_queue: str = "spam"
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    retrain_after: int = DEFAULT_RETRAIN_AFTER
    retrain_seconds: float = DEFAULT_RETRAIN_SECONDS
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    max_examples: int = DEFAULT_MAX_EXAMPLES
    learn_from_completed: bool = True


@dataclass
class Codified:
    """What `codify` did to a new task: the events to store with it and whether an
    acknowledgement may go out."""

    events: list[ev.Event] = field(default_factory=list)
    acknowledge: bool = True
    categorised: Categorised | None = None
    spam: SpamVerdict = UNSCORED


# --- the classifier ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A trained classifier (scikit-learn TF-IDF + logistic regression)."""

    pipeline: Any
    categories: tuple[str, ...]
    examples: int

    def predict(self, text: str) -> tuple[str, float]:
        proba = self.pipeline.predict_proba([text[:MAX_EXAMPLE_CHARS]])[0]
        best = int(proba.argmax())
        return str(self.pipeline.classes_[best]), float(proba[best])


def _pipeline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion([
        ("words", TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2),
                                  strip_accents="unicode")),
        ("chars", TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(3, 5),
                                  strip_accents="unicode", max_features=MAX_CHAR_FEATURES)),
    ])
    # newton-cg: on these sparse, wide features it converges ~10x faster than lbfgs.
    return make_pipeline(features, LogisticRegression(C=REGULARISATION, solver="newton-cg"))


def train(pairs: Sequence[tuple[str, str]]) -> Model | None:
    """Train on (text, category) pairs; None when there is too little to learn from. CPU-bound:
    run it in a worker thread."""
    labels = {c for _, c in pairs}
    if len(pairs) < MIN_EXAMPLES or len(labels) < 2:
        return None
    pipeline = _pipeline()
    pipeline.fit([t[:MAX_EXAMPLE_CHARS] for t, _ in pairs], [c for _, c in pairs])
    return Model(pipeline, tuple(sorted(labels)), len(pairs))


def evaluate(pairs: Sequence[tuple[str, str]], folds: int = EVALUATION_FOLDS) -> float | None:
    """Stratified k-fold accuracy of the classifier on these pairs (None: too few)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    labels = [c for _, c in pairs]
    smallest = min((labels.count(c) for c in set(labels)), default=0)
    folds = min(folds, smallest)
    if folds < 2 or len(set(labels)) < 2:
        return None
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    scores = cross_val_score(_pipeline(), [t for t, _ in pairs], labels, cv=cv)
    return float(scores.mean())


def sample_of(mail: InboundMail) -> Sample:
    return Sample(
        sender=(mail.from_address or mail.envelope_from or "").lower(),
        recipients=tuple(a.lower() for a in (*mail.recipients, *mail.to_addrs,
                                                 *mail.cc_addrs)),
        subject=mail.subject or "",
        body=mail.text or html_to_text(mail.html),
        form=dict(mail.form.fields) if mail.form is not None else {},
    )


def _synchronous(fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
    return succeed(fn(*args))


class Codification:
    def __init__(
        self,
        assignment: Assignment,
        store: Store,
        codes: CodificationStore,
        clock: IReactorTime,
        intake: Any,
        configuration: Any,
        run_in_thread: Callable[..., Deferred[Any]] = _synchronous,
        policy: CodificationPolicy | None = None,
    ) -> None:
        self.assignment = assignment
        self.router = assignment.router
        self.store = store
        self.codes = codes
        self.clock = clock
        self.intake = intake
        self.configuration = configuration  # `Configuration`: the spam queue is made there
        self.run_in_thread = run_in_thread
        self.policy = policy or CodificationPolicy()
        self.scorer: Callable[[bytes], Deferred[SpamVerdict]] | None = None
        self.rules = RuleSet()
        self.categories: dict[str, Category] = {}
        self.model: Model | None = None
        self._new_examples = 0
        self._training: Deferred[Model | None] | None = None
        self._loop: LoopingCall | None = None
        self._last_trained = 0.0
        self._listening = False

    def now(self) -> float:
        return self.clock.seconds()

    def configure(self, policy: CodificationPolicy) -> None:
        self.policy = policy

    def set_scorer(self, scorer: Callable[[bytes], Deferred[SpamVerdict]] | None) -> None:
        """The spam scorer of the e-mail edge: raw message -> Deferred[SpamVerdict]."""
        self.scorer = scorer

    def use_spam_queue(self, queue: str) -> None:
        """Where spam is parked (the e-mail edge's `spam_queue` setting); the rest of the
        policy stays."""
        self.policy = replace(self.policy, spam_queue=queue)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Deferred[None]:
        """Load rules and categories, train the classifier, keep both fresh."""
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        if not self._listening:
            self.assignment.listen(self._on_outcome)
            self._listening = True
        await self.refresh()
        self.retrain()  # in a worker thread; mail is categorised by rules until it is done
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.policy.refresh_seconds, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _tick(self) -> Deferred[None]:
        d = ensureDeferred(self._refresh_and_maybe_train())
        d.addErrback(lambda f: log.warning("codification: refresh failed: %s",
                                           f.getErrorMessage()))
        return d

    async def _refresh_and_maybe_train(self) -> None:
        await self.refresh()
        due = self.now() - self._last_trained >= self.policy.retrain_seconds
        if self._new_examples and due:
            await self.retrain()

    def refresh(self) -> Deferred[None]:
        """Reload rules and categories (the CLI changes them in the database)."""
        return ensureDeferred(self._refresh())

    async def _refresh(self) -> None:
        rules = await self.codes.list_rules()
        categories = await self.codes.list_categories()
        self.rules = RuleSet(rules)
        self.categories = {c.name: c for c in categories}

    def retrain(self) -> Deferred[Model | None]:
        """Train on the newest examples in a worker thread; the new model replaces the old one
        when done. One training at a time: a call during one waits for it."""
        if self._training is not None:
            waiter: Deferred[Model | None] = Deferred()
            self._training.addBoth(lambda r: (waiter.callback(r), r)[1])
            return waiter
        self._new_examples = 0
        self._last_trained = self.now()
        running: Deferred[Model | None] = Deferred()
        self._training = running
        d = self.codes.examples(self.policy.max_examples)
        d.addCallback(lambda xs: self.run_in_thread(train, [(x.text, x.category) for x in xs]))
        d.addCallback(self._trained)
        d.addErrback(self._train_failed)
        d.addCallback(running.callback)
        return running

    def _trained(self, model: Model | None) -> Model | None:
        self._training = None
        if model is not None:
            self.model = model
            log.info("codification: classifier trained on %d examples, %d categories",
                     model.examples, len(model.categories))
        return self.model

    def _train_failed(self, failure: Any) -> Model | None:
        self._training = None
        log.error("codification: training failed: %s", failure.getErrorMessage())
        return self.model

    # ------------------------------------------------------------------ deciding

    def categorise(self, sample: Sample, form_category: str | None = None
                   ) -> Categorised | None:
        """Form, then rules, then the classifier (if confident enough); None: no category."""
        if form_category:
            return Categorised(form_category, FROM_FORM, 1.0)
        found = by_rules(self.rules, sample)
        if found is not None:
            return found
        if self.model is not None:
            category, confidence = self.model.predict(sample.text())
            if confidence >= self.policy.min_confidence:
                return Categorised(category, FROM_CLASSIFIER, confidence)
        return None

    async def score(self, raw: bytes) -> SpamVerdict:
        if self.scorer is None:
            return UNSCORED
        try:
            verdict = await self.scorer(raw)
        except Exception as exc:  # noqa: BLE001 - an unscored mail is still a mail
            log.warning("codification: spam scorer failed: %s", exc)
            return SpamVerdict(False, error=str(exc) or type(exc).__name__)
        return verdict

    async def codify(self, mail: InboundMail, task: Task) -> Codified:
        """Categorise and score a new task before it is stored; changes `task` in place."""
        out = Codified()
        verdict = await self.score(mail.raw)
        out.spam = verdict
        form = mail.form
        try:
            decided = self.categorise(sample_of(mail), form.category if form else None)
        except Exception:
            log.exception("codification: could not categorise task %s", task.id)
            decided = None
        if decided is not None:
            out.categorised = decided
            task.attributes["category"] = decided.category
            category = self.categories.get(decided.category)
            if category is not None:
                self._apply(task, category)
            out.events.append(ev.Event(TASK_CATEGORISED, task.created_at, task.id,
                                       data=decided.data()))
        if form is not None:
            task.attributes["form"] = {k: v for k, v in form.fields.items()
                                       if k in FORM_ATTRIBUTES and v}
            if form.queue:
                self._move(task, form.queue)
            if form.priority is not None:
                task.priority = max(MIN_PRIORITY, min(MAX_PRIORITY, int(form.priority)))
        if verdict is not UNSCORED:
            # The scorer's verdict, kept with the task. None without a scorer (the trail's
            # `spam.scored` event says why): that constant was ~80 bytes of every open task.
            task.attributes["spam"] = verdict.attribute()
        parked = verdict.scored and verdict.spam
        if parked:
            task.attributes["spam"]["queue"] = task.queue
            await self._ensure_spam_queue()
            self._move(task, self.policy.spam_queue)
            out.acknowledge = False
        out.events.append(ev.Event(SPAM_SCORED, task.created_at, task.id,
                                   data={**verdict.attribute(), "parked": parked}))
        return out

    def _apply(self, task: Task, category: Category) -> None:
        for key, value in category.attributes.items():
            task.attributes.setdefault(key, value)
        if category.priority is not None:
            task.priority = category.priority
        if category.queue and category.queue != task.queue:
            if category.queue in self.router.queues:
                self._move(task, category.queue)
            else:
                log.warning("codification: category %s names unknown queue %s; kept %s",
                            category.name, category.queue, task.queue)
        if category.skills:
            _, _, skills = category.apply(task.queue, task.priority, task.base_skills)
            task.base_skills = skills
            task.required_skills = dict(skills)

    def _move(self, task: Task, queue_name: str) -> None:
        """Put a draft task in another queue: that queue's requirement (plus the task's extra
        skills) and deadline rule."""
        queue = self.router.queues.get(queue_name)
        if queue is None:
            raise UnknownQueue(queue_name)
        old = self.router.queues.get(task.queue)
        extra = {k: v for k, v in task.base_skills.items()
                 if old is None or k not in old.requirement}
        task.queue = queue.name
        task.base_skills = {**queue.requirement, **extra}
        task.required_skills = dict(task.base_skills)
        task.deadline = self._deadline(queue, task.created_at)

    def _deadline(self, queue: Queue, start: float) -> float | None:
        if not queue.deadline_rule:
            return None
        calendar = self.intake.calendars.get(queue.calendar or "", ALWAYS_OPEN)
        return parse_rule(queue.deadline_rule).due(start, calendar)

    async def _ensure_spam_queue(self) -> None:
        name = self.policy.spam_queue
        if name not in self.router.queues:
            await self.configuration.change_queue(Queue(name, mode=Mode.PULL))
            log.info("codification: created the spam queue %s", name)

    # ------------------------------------------------------------------ the parked, release

    def parked(self, limit: int = PARKED_LIMIT) -> Deferred[SpamList]:
        """The mails waiting in the spam queue, newest first (O(spam queue depth)), with their
        previews (one read of the store)."""
        tasks = [t for t in self.router.waiting(self.policy.spam_queue)
                 if t.state is TaskState.QUEUED]
        tasks.sort(key=lambda t: (-t.created_at, t.id))
        shown = [parked_of(t) for t in tasks[:max(0, limit)]]  # now: the tasks move on
        d = self.store.previews([p.task_id for p in shown]) if shown else succeed({})
        return d.addCallback(lambda previews: SpamList(len(tasks), tuple(
            p if p.task_id not in previews
            else replace(p, preview=_text(previews[p.task_id], PARKED_PREVIEW_CHARS))
            for p in shown)))

    def release(self, task_id: str, actor: str, queue: str | None = None
                ) -> Deferred[Outcome]:
        """A supervisor says a parked mail is not spam: it moves to the queue it would have gone
        to (or `queue`) with that queue's requirement and deadline, routed afresh with its
        original age, in one commit (`task.transferred` after `spam.released`)."""
        return ensureDeferred(self._release(task_id, actor, queue))

    async def _release(self, task_id: str, actor: str, queue: str | None) -> Outcome:
        task = self.router.tasks.get(task_id)
        if task is None or task.queue != self.policy.spam_queue:
            raise InvalidValue(f"task {task_id} is not parked as spam")
        if task.state is not TaskState.QUEUED:
            raise InvalidValue(f"task {task_id} is {task.state.value}")
        spam = dict(task.attributes.get("spam") or {})
        target = queue or spam.get("queue")
        if not target or target == self.policy.spam_queue or target not in self.router.queues:
            raise UnknownQueue(str(target))
        now = self.now()
        spam["released"] = {"by": actor, "at": now}
        task.attributes["spam"] = spam
        # The deadline is the target queue's (the spam queue has none); it must be set before
        # the task enters that queue's order, which `redirect` does.
        task.deadline = self._deadline(self.router.queues[target], task.created_at)
        out = self.router.redirect(task_id, now, actor, queue=target)
        out.events.insert(0, ev.Event(SPAM_RELEASED, now, task_id, actor=actor,
                                      data={"from_queue": self.policy.spam_queue,
                                            "to_queue": target}))
        out.touch(task)
        return await self.assignment.apply(out)

    # ------------------------------------------------------------------ corrections, learning

    def correct(self, task_id: str, category: str, actor: str, agent_id: str | None = None
                ) -> Deferred[Categorised]:
        """Set the category of an open task by hand. With `agent_id`, that agent must hold the
        task. The correction is stored as an event and as a training example."""
        return ensureDeferred(self._correct(task_id, category, actor, agent_id))

    async def _correct(self, task_id: str, category: str, actor: str,
                       agent_id: str | None) -> Categorised:
        category = check_name(category)
        task = self.router.tasks.get(task_id)
        if task is None:
            raise InvalidValue(f"task {task_id} is not open")
        if agent_id is not None and (task.agent_id != agent_id or task.state not in (
                TaskState.ASSIGNED, TaskState.WRAP_UP)):
            raise Forbidden(agent_id, f"task {task_id}")
        decided = Categorised(category, FROM_AGENT, 1.0,
                              previous=task.attributes.get("category"))
        now = self.now()
        task.attributes["category"] = category
        task.updated_at = now
        await self.store.record(Changes(tasks=[task], events=[ev.Event(
            TASK_CATEGORISED, now, task_id, agent_id, actor, decided.data())]))
        text = await self._text_of(task)
        if text:
            await self.learn([TrainingExample(text, category, EXAMPLE_AGENT, now, task_id,
                                              actor)])
        return decided

    async def _text_of(self, task: Task) -> str:
        if task.channel is not Channel.EMAIL:
            return ""
        messages = await self.store.mail_messages(task.id)
        first = next((m for m in messages if m.direction == "in" and m.kind == "customer"), None)
        if first is None:
            return ""
        return f"{first.subject}\n{first.text or html_to_text(first.html)}"[:MAX_EXAMPLE_CHARS]

    def learn(self, examples: Sequence[TrainingExample]) -> Deferred[None]:
        """Store examples; retrain once `retrain_after` new ones have come in."""
        d = self.codes.add_examples(list(examples))

        def counted(_: Any) -> None:
            self._new_examples += len(examples)
            if self._new_examples >= self.policy.retrain_after:
                self.retrain()

        d.addCallback(counted)
        return d

    def _on_outcome(self, outcome: Outcome) -> None:
        if not self.policy.learn_from_completed:
            return
        for e in outcome.events:
            if e.kind != ev.TASK_COMPLETED or e.task_id is None:
                continue
            task = outcome.tasks.get(e.task_id)
            if task is None or task.channel is not Channel.EMAIL:
                continue
            category = task.attributes.get("category")
            if not category or category == SPAM_CATEGORY or (
                    e.data.get("disposition") in NOT_LEARNT):
                continue
            d = ensureDeferred(self._learn_completed(task.snapshot(), str(category), e.at))
            d.addErrback(lambda f: log.warning("codification: could not learn from a task: %s",
                                               f.getErrorMessage()))

    async def _learn_completed(self, task: Task, category: str, at: float) -> None:
        text = await self._text_of(task)
        if text:
            await self.learn([TrainingExample(text, category, EXAMPLE_DISPOSITION, at,
                                              task.id)])

    # ------------------------------------------------------------------ configuration

    def add_rule(self, rule: CategoryRule) -> Deferred[int]:
        try:
            check_rule(rule)
        except InvalidValue as exc:
            return fail(exc)
        d = self.codes.add_rule(rule)
        d.addCallback(self._rule_added, rule)
        return d

    def _rule_added(self, rule_id: int, rule: CategoryRule) -> int:
        self.rules = RuleSet([*(r for r, _ in self.rules.rules), replace(rule, id=rule_id)])
        return rule_id
