"""Answers: the library of standard answers, the knowledge base, the four response modes and the
quality review checklist, as pure rules (stdlib only, no I/O, `now` is an argument).

What it promises:
- `fill(template, values, target)` replaces `{{name}}` placeholders in ONE pass (a value that
  itself looks like `{{other}}` is never expanded again). In `TEXT` a value goes in verbatim; in
  `HTML` it is escaped (`<`, `>`, `&`, quotes), so a value can never add markup; in `HEADER`
  (subjects, any header-ish place) CR, LF and every other control character become a space, so
  a value can never add a header. A placeholder with no value is left visible as written and
  reported in `Filled.missing`: an agent sees it in the reply box and fixes it; a send without a
  person (automatic mode, a supervisor's approval) is refused while anything is missing.
- `rule_for(rules, queue, category)` picks the most specific response-mode rule: (queue,
  category), then (queue, *), then (*, category), then (*, *), else the default `free` rule.
- `automatic_plan(...)` decides what happens to a new e-mail in automatic mode: below the
  threshold (or with a value missing) it goes to an agent; sampled for review, it waits for a
  supervisor; otherwise it is sent. `sampled(share, draw)` is the one sampling rule (`draw` in
  [0, 1) comes from an injected random source, so tests are deterministic).
- `score(checklist, marks)` turns a reviewer's ticks into (score, max_score).
"""

from __future__ import annotations

import enum
import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidValue

# --- response modes ---------------------------------------------------------------------------


class ResponseMode(enum.StrEnum):
    FREE = "free"  # the agent writes
    ASSISTED = "assisted"  # the agent searches the library and inserts
    SUGGESTED = "suggested"  # the system shows the best three with their score
    AUTOMATIC = "automatic"  # sent without an agent above the confidence threshold


ANY = "*"  # a rule's wildcard queue or category

# --- limits -----------------------------------------------------------------------------------

MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 100_000
MAX_ID_CHARS = 100
MAX_LIST_ITEMS = 100
MAX_VALUE_CHARS = 2_000  # a placeholder value longer than this is cut (with an ellipsis)

# --- placeholders -----------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]{0,63})\s*\}\}")
# The names a template may always use; `attr.<key>` reaches any task attribute.
CUSTOMER_NAME, REQUEST, AGENT_NAME, DEADLINE = "customer_name", "request", "agent_name", "deadline"
STANDARD_NAMES = frozenset({CUSTOMER_NAME, REQUEST, AGENT_NAME, DEADLINE})
ATTRIBUTE_PREFIX = "attr."
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class Target(enum.Enum):
    TEXT = "text"
    HTML = "html"
    HEADER = "header"


@dataclass(frozen=True, slots=True)
class Filled:
    text: str
    missing: tuple[str, ...] = ()  # placeholder names without a value, in order of appearance


def placeholders(template: str) -> tuple[str, ...]:
    """The placeholder names a template uses, in order, each once."""
    seen: dict[str, None] = {}
    for m in PLACEHOLDER.finditer(template or ""):
        seen.setdefault(m.group(1), None)
    return tuple(seen)


def _shown(value: Any) -> str:
    text = "" if value is None else str(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + "…"
    return text


def fill(template: str, values: Mapping[str, Any], target: Target = Target.TEXT) -> Filled:
    """The template with its placeholders replaced (see the module docstring)."""
    missing: dict[str, None] = {}

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values or values[name] is None:
            missing.setdefault(name, None)
            return m.group(0)
        value = _shown(values[name])
        if target is Target.HTML:
            return html.escape(value, quote=True)
        if target is Target.HEADER:
            return _CONTROL.sub(" ", value)
        return value

    out = PLACEHOLDER.sub(one, template or "")
    if target is Target.HEADER:
        out = _CONTROL.sub(" ", out).strip()
    return Filled(out, tuple(missing))


def values_for(*, customer_name: str | None, request: str | None, agent_name: str | None,
               deadline: str | None, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The placeholder values of one task: the standard names and `attr.<key>` for each scalar
    attribute (nested values are not offered)."""
    out: dict[str, Any] = {CUSTOMER_NAME: customer_name or None, REQUEST: request or None,
                           AGENT_NAME: agent_name or None, DEADLINE: deadline or None}
    for key, value in attributes.items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            out[ATTRIBUTE_PREFIX + str(key)] = value
    return out


def unknown_names(template: str) -> list[str]:
    """Placeholder names that can never have a value (neither standard nor `attr.<key>`)."""
    return [n for n in placeholders(template)
            if n not in STANDARD_NAMES and not (n.startswith(ATTRIBUTE_PREFIX)
                                                and len(n) > len(ATTRIBUTE_PREFIX))]


# --- the library ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """A standard answer at its current version. Empty `queues` / `categories`: serves all."""

    id: str
    title: str
    text: str
    html: str = ""
    language: str = "en"
    queues: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    owner: str = ""
    version: int = 1
    updated_at: float = 0.0
    retired: bool = False

    def serves(self, queue: str | None, category: str | None) -> bool:
        if self.retired:
            return False
        if self.queues and queue not in self.queues:
            return False
        return not (self.categories and category not in self.categories)


@dataclass(frozen=True, slots=True)
class AnswerVersion:
    """One saved version of an answer: what it said, who saved it, when."""

    answer_id: str
    version: int
    title: str
    text: str
    html: str
    language: str
    queues: tuple[str, ...]
    categories: tuple[str, ...]
    owner: str
    author: str
    at: float
    retired: bool = False


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidValue(f"{what} is a list of names")
    out = tuple(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))
    if len(out) > MAX_LIST_ITEMS or any(len(v) > MAX_ID_CHARS for v in out):
        raise InvalidValue(f"{what}: at most {MAX_LIST_ITEMS} names of {MAX_ID_CHARS} chars")
    return out


def check_id(value: Any, what: str = "id") -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS or not _ID.match(
            value):
        raise InvalidValue(f"{what} must be 1-{MAX_ID_CHARS} letters, digits, '_', '.', ':' "
                           f"or '-', starting with a letter or digit")
    return value


def _text(value: Any, what: str, limit: int, required: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidValue(f"{what} must be text")
    if required and not value.strip():
        raise InvalidValue(f"{what} is required")
    if len(value) > limit:
        raise InvalidValue(f"{what} is longer than {limit} chars")
    return value


def make_answer(data: Mapping[str, Any], *, owner: str, now: float, version: int = 1) -> Answer:
    """An answer from plain values (the API, the CLI's import file), checked: every field's
    type and size, and placeholders only of known names."""
    title = _text(data.get("title"), "title", MAX_TITLE_CHARS)
    text = _text(data.get("text"), "text", MAX_BODY_CHARS)
    body_html = _text(data.get("html"), "html", MAX_BODY_CHARS, required=False)
    for part in (title, text, body_html):
        bad = unknown_names(part)
        if bad:
            raise InvalidValue(f"unknown placeholders {', '.join(bad)} (use "
                               f"{', '.join(sorted(STANDARD_NAMES))} or attr.<attribute>)")
    language = _text(data.get("language") or "en", "language", 16)
    return Answer(
        id=check_id(data.get("id"), "answer id"), title=title, text=text, html=body_html,
        language=language.strip().lower(), queues=_strings(data.get("queues"), "queues"),
        categories=_strings(data.get("categories"), "categories"),
        owner=_text(data.get("owner") or owner, "owner", MAX_ID_CHARS), version=version,
        updated_at=now, retired=bool(data.get("retired", False)),
    )


def version_of(answer: Answer, author: str) -> AnswerVersion:
    return AnswerVersion(answer.id, answer.version, answer.title, answer.text, answer.html,
                         answer.language, answer.queues, answer.categories, answer.owner,
                         author, answer.updated_at, answer.retired)


def same_content(a: Answer, b: Answer) -> bool:
    """Whether saving `b` over `a` changes nothing (no new version then)."""
    return (a.title, a.text, a.html, a.language, a.queues, a.categories, a.owner, a.retired) == (
        b.title, b.text, b.html, b.language, b.queues, b.categories, b.owner, b.retired)


# --- the knowledge base -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Article:
    """A knowledge-base (FAQ) article: public on /help, and a source of suggestions."""

    id: str
    question: str
    answer: str
    category: str = ""
    language: str = "en"
    updated_at: float = 0.0
    retired: bool = False


def make_article(data: Mapping[str, Any], *, now: float) -> Article:
    return Article(
        id=check_id(data.get("id"), "article id"),
        question=_text(data.get("question"), "question", MAX_TITLE_CHARS * 2),
        answer=_text(data.get("answer"), "answer", MAX_BODY_CHARS),
        category=_text(data.get("category"), "category", MAX_ID_CHARS, required=False).strip(),
        language=_text(data.get("language") or "en", "language", 16).strip().lower(),
        updated_at=now, retired=bool(data.get("retired", False)),
    )


@dataclass(frozen=True, slots=True)
class Deflection:
    """How one article did on /help: views and the visitors' "did this answer your question"."""

    article_id: str
    category: str
    views: int
    helped: int
    not_helped: int

    @property
    def rate(self) -> float | None:
        """Share of views after which the visitor said it answered them (deflected)."""
        return self.helped / self.views if self.views else None


# --- response-mode rules ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseRule:
    """How e-mails of a queue and category are answered. `threshold`: the top suggestion's
    score (cosine similarity, 0-1) an automatic answer needs; `review_share`: the share of
    outgoing answers held for a supervisor's approval (0-1)."""

    queue: str = ANY
    category: str = ANY
    mode: ResponseMode = ResponseMode.FREE
    threshold: float = 1.0
    review_share: float = 0.0


DEFAULT_RULE = ResponseRule()


def make_rule(data: Mapping[str, Any]) -> ResponseRule:
    try:
        mode = ResponseMode(str(data.get("mode", "free")))
    except ValueError:
        raise InvalidValue(f"mode is one of {', '.join(m.value for m in ResponseMode)}") from None
    threshold, share = data.get("threshold", 1.0), data.get("review_share", 0.0)
    for name, value in (("threshold", threshold), ("review_share", share)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InvalidValue(f"{name} is a number from 0 to 1")
    queue = str(data.get("queue") or ANY)
    category = str(data.get("category") or ANY)
    if queue != ANY:
        check_id(queue, "queue")
    if category != ANY:
        check_id(category, "category")
    return ResponseRule(queue, category, mode, float(threshold), float(share))


def rule_for(rules: Iterable[ResponseRule], queue: str, category: str | None) -> ResponseRule:
    by_key = {(r.queue, r.category): r for r in rules}
    cat = category or ANY
    for key in ((queue, cat), (queue, ANY), (ANY, cat), (ANY, ANY)):
        if key in by_key:
            return by_key[key]
    return DEFAULT_RULE


def sampled(share: float, draw: float) -> bool:
    """Whether one answer is held for review: `draw` is uniform in [0, 1)."""
    return draw < share


def review_share(rule: ResponseRule, agent_share: float | None) -> float:
    """The share held for review of an agent's answer: the rule's, or the agent's if higher
    (e.g. 1.0 for a new agent whose every answer is checked)."""
    return max(rule.review_share, agent_share or 0.0)


class Plan(enum.StrEnum):
    AGENT = "agent"  # route to an agent as usual
    REVIEW = "review"  # hold the automatic answer for a supervisor
    SEND = "send"  # send it and complete the task


@dataclass(frozen=True, slots=True)
class AutomaticPlan:
    plan: Plan
    reason: str
    answer_id: str | None = None
    score: float = 0.0


def automatic_plan(rule: ResponseRule, best: tuple[str, float] | None,
                   missing: tuple[str, ...], draw: float) -> AutomaticPlan:
    """What to do with a new e-mail whose rule is `rule`, given the best suggestion
    `(answer_id, score)` (None: nothing fits), the placeholders it could not fill and a draw."""
    if rule.mode is not ResponseMode.AUTOMATIC:
        return AutomaticPlan(Plan.AGENT, f"mode is {rule.mode.value}")
    if best is None:
        return AutomaticPlan(Plan.AGENT, "no answer fits")
    answer_id, top = best
    if top < rule.threshold:
        return AutomaticPlan(Plan.AGENT, f"score {top:.3f} below threshold {rule.threshold:.3f}",
                             answer_id, top)
    if missing:
        return AutomaticPlan(Plan.AGENT, f"no value for {', '.join(missing)}", answer_id, top)
    if sampled(rule.review_share, draw):
        return AutomaticPlan(Plan.REVIEW, "sampled for review", answer_id, top)
    return AutomaticPlan(Plan.SEND, f"score {top:.3f} at or above {rule.threshold:.3f}",
                         answer_id, top)


# --- quality review ---------------------------------------------------------------------------


class Decision(enum.StrEnum):
    APPROVED = "approved"
    EDITED = "edited"
    REJECTED = "rejected"


HELD = "held"  # a review item's state before its decision

# The reviewer's checklist: item -> points. One point each unless configured otherwise.
DEFAULT_CHECKLIST: dict[str, int] = {
    "correct": 1,  # the answer is right for the question
    "complete": 1,  # every question of the customer is answered
    "tone": 1,  # polite, in the centre's voice
    "language": 1,  # spelling and grammar
    "personal": 1,  # the customer's name, request number, no leftover placeholders
}


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """An outgoing answer held for a supervisor, and (once decided) the decision and score."""

    id: str
    task_id: str
    agent_id: str | None  # None: an automatic answer
    mode: ResponseMode
    answer_id: str | None
    text: str
    html: str
    queue: str
    created_at: float
    state: str = HELD  # held | approved | edited | rejected
    reviewer: str | None = None
    decided_at: float | None = None
    score: int | None = None
    max_score: int | None = None
    checklist: dict[str, bool] = field(default_factory=dict)
    final_text: str | None = None
    note: str = ""


def score(checklist: Mapping[str, int], marks: Mapping[str, Any]) -> tuple[int, int]:
    """(points of the ticked items, points of all items); unknown items are refused."""
    unknown = sorted(set(marks) - set(checklist))
    if unknown:
        raise InvalidValue(f"not on the checklist: {', '.join(unknown)} (items: "
                           f"{', '.join(checklist)})")
    for name, value in marks.items():
        if not isinstance(value, bool):
            raise InvalidValue(f"checklist item {name} is true or false")
    return (sum(points for name, points in checklist.items() if marks.get(name) is True),
            sum(checklist.values()))
