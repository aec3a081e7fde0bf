"""Categories (codification): what a new e-mail is about, decided by rules first.

Sits in the pure domain (stdlib only, no I/O, no clock). What it promises:

- A `CategoryRule` looks at one field of a `Sample` (sender, recipient, subject, body, any of
  those, or a web form field `form:<name>`) with a regular expression or a keyword list, both
  case-insensitive; `check_rule` refuses a rule that could not work (bad field, bad regex,
  over-long pattern) before it is stored.
- `RuleSet.first_match` evaluates enabled rules in `position` order and returns the first that
  matches; text longer than `MAX_MATCH_CHARS` is cut before matching, so one huge mail costs a
  bounded amount of regex work.
- A `Category` says what the category drives: queue, priority, required skills and extra
  attributes; `Category.apply` gives the queue, priority and skills of a task it categorises.
- `Categorised` is one decision: category, source (rules | classifier | form | agent),
  confidence in [0, 1], the rule that fired and the previous category.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .agents import check_skills
from .errors import InvalidValue
from .tasks import MAX_PRIORITY, MIN_PRIORITY

# Fields a rule can look at; `form:<name>` looks at one field of a web form submission.
SENDER, RECIPIENT, SUBJECT, BODY, ANY = "sender", "recipient", "subject", "body", "any"
FIELDS = frozenset({SENDER, RECIPIENT, SUBJECT, BODY, ANY})
FORM_PREFIX = "form:"
# How a rule's pattern matches.
REGEX, KEYWORDS = "regex", "keywords"
MATCHES = frozenset({REGEX, KEYWORDS})
# Where a category came from (wire API: the `source` of `task.categorised`).
FROM_RULES, FROM_CLASSIFIER, FROM_FORM, FROM_AGENT = "rules", "classifier", "form", "agent"
SOURCES = frozenset({FROM_RULES, FROM_CLASSIFIER, FROM_FORM, FROM_AGENT})

MAX_PATTERN_CHARS = 1000
MAX_MATCH_CHARS = 20_000
MAX_NAME_CHARS = 100
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(name: str) -> str:
    """A category name: letters, digits, `_ . -`, at most MAX_NAME_CHARS."""
    name = (name or "").strip()
    if not _NAME.match(name) or len(name) > MAX_NAME_CHARS:
        raise InvalidValue(f"not a category name: {name!r} (letters, digits, _ . -)")
    return name


@dataclass(frozen=True, slots=True)
class Sample:
    """What rules and the classifier look at in a new message."""

    sender: str = ""
    recipients: tuple[str, ...] = ()
    subject: str = ""
    body: str = ""
    form: Mapping[str, str] = field(default_factory=dict)

    def values(self, name: str) -> list[str]:
        if name == SENDER:
            return [self.sender]
        if name == RECIPIENT:
            return list(self.recipients)
        if name == SUBJECT:
            return [self.subject]
        if name == BODY:
            return [self.body[:MAX_MATCH_CHARS]]
        if name == ANY:
            return [self.sender, *self.recipients, self.subject, self.body[:MAX_MATCH_CHARS]]
        if name.startswith(FORM_PREFIX):
            value = self.form.get(name[len(FORM_PREFIX):])
            return [] if value is None else [str(value)[:MAX_MATCH_CHARS]]
        return []

    def text(self) -> str:
        """The classifier's input: subject and body."""
        return f"{self.subject}\n{self.body[:MAX_MATCH_CHARS]}"


@dataclass(frozen=True, slots=True)
class CategoryRule:
    category: str
    field: str
    pattern: str
    match: str = REGEX
    position: int = 0
    enabled: bool = True
    id: int | None = None

    def compile(self) -> re.Pattern[str]:
        if self.match == KEYWORDS:
            words = [w.strip() for w in self.pattern.split(",") if w.strip()]
            if not words:
                raise InvalidValue("a keywords rule needs at least one keyword")
            return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.I)
        try:
            return re.compile(self.pattern, re.I)
        except re.error as exc:
            raise InvalidValue(f"bad regular expression {self.pattern!r}: {exc}") from None


def check_rule(rule: CategoryRule) -> CategoryRule:
    """The rule, if it can work; InvalidValue otherwise."""
    check_name(rule.category)
    if rule.field not in FIELDS and not (
            rule.field.startswith(FORM_PREFIX) and len(rule.field) > len(FORM_PREFIX)):
        raise InvalidValue(f"unknown field {rule.field!r}: one of {sorted(FIELDS)} or "
                           f"{FORM_PREFIX}<name>")
    if rule.match not in MATCHES:
        raise InvalidValue(f"unknown match {rule.match!r}: one of {sorted(MATCHES)}")
    if not rule.pattern or len(rule.pattern) > MAX_PATTERN_CHARS:
        raise InvalidValue(f"a pattern has 1-{MAX_PATTERN_CHARS} characters")
    rule.compile()
    return rule


class RuleSet:
    """Rules compiled once, in evaluation order (position, then id)."""

    def __init__(self, rules: Iterable[CategoryRule] = ()) -> None:
        ordered = sorted((r for r in rules if r.enabled),
                         key=lambda r: (r.position, r.id if r.id is not None else 0))
        self.rules = [(r, r.compile()) for r in ordered]

    def __len__(self) -> int:
        return len(self.rules)

    def first_match(self, sample: Sample) -> CategoryRule | None:
        for rule, pattern in self.rules:
            if any(pattern.search(v or "") for v in sample.values(rule.field)):
                return rule
        return None


@dataclass(frozen=True, slots=True)
class Category:
    """What a category drives; None / empty: leave the task's own value."""

    name: str
    queue: str | None = None
    priority: int | None = None
    skills: Mapping[str, int] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name)
        object.__setattr__(self, "skills", check_skills(dict(self.skills)))
        if self.priority is not None and not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise InvalidValue(f"priority must be {MIN_PRIORITY}-{MAX_PRIORITY}")

    def apply(self, queue: str, priority: int, skills: Mapping[str, int]
              ) -> tuple[str, int, dict[str, int]]:
        """The queue, priority and skills of a task this category was given to: the category's
        queue and priority replace the task's, its skills add to (or raise) the task's."""
        merged = dict(skills)
        for skill, level in self.skills.items():
            merged[skill] = max(level, merged.get(skill, 0))
        return (self.queue or queue,
                priority if self.priority is None else self.priority, merged)


@dataclass(frozen=True, slots=True)
class Categorised:
    """One categorisation decision (the data of the `task.categorised` event)."""

    category: str
    source: str
    confidence: float = 1.0
    rule: int | None = None
    previous: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise InvalidValue(f"unknown categorisation source {self.source!r}")

    def data(self) -> dict[str, Any]:
        return {"category": self.category, "source": self.source,
                "confidence": round(float(self.confidence), 4), "rule": self.rule,
                "previous": self.previous}


def by_rules(rules: RuleSet, sample: Sample) -> Categorised | None:
    rule = rules.first_match(sample)
    if rule is None:
        return None
    return Categorised(rule.category, FROM_RULES, 1.0, rule.id)


@dataclass(frozen=True, slots=True)
class Prequalified:
    """A web form submission's fields and what the form's configuration derived from them
    (queue, priority, category): they apply directly, before and above the rules."""

    fields: Mapping[str, str] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    category: str | None = None

