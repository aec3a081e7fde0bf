"""Queues: the eligibility requirement on skills and as an expression, escalation steps, ordering, push or pull mode,
the service-level target, offer timeouts and the e-mail deadline rule.

Ordering (one rule for every queue, so an agent serving several queues sees one global order):
higher priority first (a task's own priority plus its queue's `priority`, added once, by the
router), then the earliest *due time*: the deadline for an e-mail (or arrival +
the queue's e-mail target when it has none), arrival + the phone target for a call. Within a
channel this is exactly "priority then age" for calls and "priority then earliest deadline" for
e-mails; across channels it serves first whatever is due first.

Disposition codes: a queue may list the codes its agents close tasks with (`dispositions`, pairs
of a short identifier and a label); an agent's code must then be one of them
(`check_disposition`). A queue without any accepts every code.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .agents import check_skills
from .errors import InvalidValue
from .requirements import Condition, Requirement
from .tasks import Channel, Task

DEFAULT_OFFER_TIMEOUT: Mapping[Channel, float] = {Channel.PHONE: 20.0, Channel.EMAIL: 60.0}
# Service-level targets: a call answered within 20 s; an e-mail answered within 24 h when the
# queue sets no deadline rule. The share to reach (80 %) is the queue's `sl_share`.
DEFAULT_SL_TARGET: Mapping[Channel, float] = {Channel.PHONE: 20.0, Channel.EMAIL: 24 * 3600.0}
DEFAULT_SL_SHARE = 0.8
DEFAULT_WRAP_UP_SECONDS = 30.0
# An agent may extend a wrap-up (Router.extend_wrap_up) by at most this much in all, and by at
# most this much at once.
MAX_WRAP_UP_EXTENSION = 600.0
# Disposition codes: short identifiers (a letter or digit first, then letters, digits, '_', '-',
# '.'), labels for people; a queue lists at most MAX_DISPOSITIONS of them.
DISPOSITION_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
MAX_DISPOSITION_LABEL = 100
MAX_DISPOSITIONS = 50


class Mode(enum.StrEnum):
    PUSH = "push"  # the router offers tasks to agents
    PULL = "pull"  # agents pick tasks from the queue's list


class AgentChoice(enum.StrEnum):
    LONGEST_IDLE = "longest_idle"
    HIGHEST_SKILL = "highest_skill"


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """After `after_seconds` of task age, override the requirement: each skill in `requirement`
    gets the given minimum level, or is dropped when the level is None; `expression`, when not
    None, replaces the requirement expression from this step on ("" drops it)."""

    after_seconds: float
    requirement: Mapping[str, int | None]
    expression: str | None = None

    def apply(self, base: Mapping[str, int]) -> dict[str, int]:
        out = dict(base)
        for skill, level in self.requirement.items():
            if level is None:
                out.pop(skill, None)
            else:
                out[skill] = level
        return out


# A queue's name: it appears in addresses and settings ("support@example.com=support",
# sip:support@host, "sales=sales@example.com"), so letters, digits and `_ . -` only.
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_queue_name(name: str) -> str:
    """Refuse a name that would not survive an address or a setting (checked when a queue is
    created or changed through the configuration service, not when a stored one is read back)."""
    if not isinstance(name, str) or not QUEUE_NAME.match(name):
        raise InvalidValue(f"queue name {name!r}: 1-64 letters, digits, '_', '.' or '-', "
                           f"starting with a letter or digit")
    return name


@dataclass(slots=True)
class Queue:
    name: str
    requirement: dict[str, int] = field(default_factory=dict)
    steps: tuple[EscalationStep, ...] = ()
    mode: Mode = Mode.PUSH
    agent_choice: AgentChoice = AgentChoice.LONGEST_IDLE
    priority: int = 0
    sl_target: dict[Channel, float] = field(default_factory=lambda: dict(DEFAULT_SL_TARGET))
    sl_share: float = DEFAULT_SL_SHARE
    offer_timeout: dict[Channel, float] = field(
        default_factory=lambda: dict(DEFAULT_OFFER_TIMEOUT)
    )
    wrap_up_seconds: float = DEFAULT_WRAP_UP_SECONDS
    calendar: str | None = None
    deadline_rule: str | None = None  # see deadlines.parse_rule, e.g. "sliding 24h"
    # (code, label) pairs, e.g. (("solved", "Solved"), ("callback", "Call back later"))
    dispositions: tuple[tuple[str, str], ...] = ()
    disabled: bool = False  # takes no new tasks; what waits in it is still served
    # The blend's reserve: while this queue's calls are at risk (service/blending.py), at least
    # this many of its members who take calls are kept free of e-mail for them (0: none).
    reserve: int = 0
    # A requirement expression over agents' skills and attributes and tasks' attributes, on
    # top of `requirement` (see expressions.py); "" for none.
    expression: str = ""
    # Derived: the compiled expression in force at each step (index 0: before any step).
    requirements: tuple[Requirement | None, ...] = field(
        init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidValue("a queue needs a name")
        self.requirement = check_skills(self.requirement)
        steps = tuple(sorted(self.steps, key=lambda s: s.after_seconds))
        for s in steps:
            if s.after_seconds < 0:
                raise InvalidValue("escalation steps start at 0 s or later")
            check_skills({k: v for k, v in s.requirement.items() if v is not None})
        self.steps = steps
        current = Requirement(self.expression) if self.expression.strip() else None
        self.expression = current.text if current else ""
        compiled = [current]
        for s in steps:
            if s.expression is not None:
                current = Requirement(s.expression) if s.expression.strip() else None
            compiled.append(current)
        self.requirements = tuple(compiled)
        if not isinstance(self.reserve, int) or isinstance(self.reserve, bool) or \
                self.reserve < 0:
            raise InvalidValue("reserve: a number of agents, 0 or more")
        if not 0 < self.sl_share <= 1:
            raise InvalidValue("sl_share must be in (0, 1]")
        self.dispositions = check_dispositions(self.dispositions)

    def check_disposition(self, code: str) -> None:
        """Refuse a code that is not one of the queue's (a queue without codes takes any)."""
        if self.dispositions and code not in {c for c, _ in self.dispositions}:
            raise InvalidValue(f"disposition {code!r} is not a code of queue {self.name} "
                               f"({', '.join(c for c, _ in self.dispositions)})")

    def requirement_at(self, base: Mapping[str, int], step: int) -> dict[str, int]:
        """The requirement of a task whose intake asked for `base`, at escalation `step`
        (0 = no step applied yet; step i applies steps[i-1] on top of base)."""
        return self.steps[step - 1].apply(base) if step else dict(base)

    def condition_at(self, task: Task, step: int | None = None) -> Condition | None:
        """The task's requirement expression at `step` (default: its own), bound to its
        attributes; None when there is nothing to test. Packed attributes are read only when
        the expression names a task attribute."""
        rules = self.requirements
        if len(rules) == 1 and rules[0] is None:
            return None
        at = task.step if step is None else step
        rule = rules[min(at, len(rules) - 1)]
        if rule is None:
            return None
        return rule.bind(task.attributes) if rule.task_names else rule.fixed

    def step_due(self, task: Task) -> float | None:
        """When the task's next escalation step is due, or None after the last one."""
        if task.step >= len(self.steps):
            return None
        return task.created_at + self.steps[task.step].after_seconds

    def due(self, task: Task) -> float:
        if task.channel is Channel.EMAIL and task.deadline is not None:
            return task.deadline
        return task.created_at + self.sl_target.get(task.channel, DEFAULT_SL_TARGET[task.channel])


def check_dispositions(pairs: Iterable[Iterable[str]]) -> tuple[tuple[str, str], ...]:
    """Validate (code, label) pairs: codes short identifiers, unique; labels non-empty (trimmed).
    Returns them as a tuple of pairs (what a JSON round trip gives back as lists)."""
    out: list[tuple[str, str]] = []
    for pair in pairs:
        try:
            if isinstance(pair, str | bytes):
                raise TypeError
            code, label = pair
        except (TypeError, ValueError):
            raise InvalidValue(f"a disposition is a (code, label) pair, got {pair!r}") from None
        if not isinstance(code, str) or not DISPOSITION_CODE.fullmatch(code):
            raise InvalidValue(f"disposition code {code!r}: 1-40 letters, digits, '_', '-' or "
                               f"'.', starting with a letter or digit")
        if not isinstance(label, str) or not label.strip() or len(label) > MAX_DISPOSITION_LABEL:
            raise InvalidValue(f"disposition {code}: the label must be 1-{MAX_DISPOSITION_LABEL} "
                               f"characters")
        if any(code == c for c, _ in out):
            raise InvalidValue(f"disposition code {code!r} is listed twice")
        out.append((code, label.strip()))
    if len(out) > MAX_DISPOSITIONS:
        raise InvalidValue(f"a queue has at most {MAX_DISPOSITIONS} disposition codes")
    return tuple(out)
