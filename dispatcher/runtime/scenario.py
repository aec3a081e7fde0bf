"""Scenario files of `switchboard simulate --scenario` and `switchboard staffing`: a contact
centre's day in TOML (read with tomllib), checked whole before anything runs.

What it promises: every value is checked, and a bad one is an `InvalidValue` naming its key
(`queues[1].sl_seconds.phone: ...`) and what is wrong with it; times of day are "HH:MM" local
wall-clock times of the scenario's `timezone` on its `date` (the first simulated day); arrival
profiles are expected arrivals per 15-minute interval from the profile's `start`. The format is
described in docs/staffing.md, and docs/scenarios/blended-centre.toml is an example.
"""

from __future__ import annotations

import math
import random
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatcher.domain.agents import (
    DEFAULT_INTERRUPTIONS,
    MAX_LEVEL,
    MIN_LEVEL,
    InterruptionMatrix,
    interruptions,
)
from dispatcher.domain.deadlines import BusinessCalendar, parse_rule
from dispatcher.domain.errors import DomainError, InvalidValue
from dispatcher.domain.queues import DEFAULT_SL_SHARE, DEFAULT_SL_TARGET, check_queue_name
from dispatcher.domain.tasks import Channel

INTERVAL = 900.0  # seconds: results and profiles are per 15 minutes
DAY = 86_400.0
INTERVALS_PER_DAY = int(DAY // INTERVAL)
MAX_DAYS = 31
MAX_GROUP = 10_000
DISTRIBUTIONS = ("exponential", "lognormal", "fixed")


@dataclass(frozen=True)
class HandleTime:
    """Handling time in seconds: exponential (mean), lognormal (mean, sd) or fixed (mean)."""

    distribution: str
    mean: float
    sd: float = 0.0

    def draw(self, rng: random.Random) -> float:
        if self.distribution == "exponential":
            return rng.expovariate(1.0 / self.mean)
        if self.distribution == "lognormal":
            s2 = math.log(1.0 + (self.sd / self.mean) ** 2)
            return rng.lognormvariate(math.log(self.mean) - s2 / 2, math.sqrt(s2))
        return self.mean


@dataclass(frozen=True)
class Traffic:
    """Work arriving in one queue on one channel: `profile[i]` expected arrivals in the i-th
    15-minute interval of the day (Poisson within it)."""

    queue: str
    channel: Channel
    profile: tuple[float, ...]
    handle: HandleTime
    patience: float | None = None  # mean seconds (exponential); None: nobody abandons


@dataclass(frozen=True)
class QueueSpec:
    name: str
    skills: Mapping[str, int]
    sl_seconds: Mapping[Channel, float]
    sl_share: float = DEFAULT_SL_SHARE
    deadline: str | None = None  # a rule for e-mails, as deadlines.parse_rule reads it
    calendar: str | None = None
    wrap_up_seconds: float = 0.0
    reserve: int = 0  # agents kept free of e-mail for its calls while they are at risk


@dataclass(frozen=True)
class AgentGroup:
    name: str
    count: int
    skills: Mapping[str, int]
    queues: frozenset[str]
    channels: frozenset[Channel]
    capacity: Mapping[Channel, int]
    shift: tuple[float, float]  # seconds after local midnight
    breaks: tuple[tuple[float, float], ...] = ()
    interruptions: InterruptionMatrix | None = None  # their own blend; None: the centre's


@dataclass(frozen=True)
class Scenario:
    name: str
    start: float  # epoch of local midnight of the first day
    days: int
    seed: int
    timezone: str
    queues: tuple[QueueSpec, ...]
    agents: tuple[AgentGroup, ...]
    traffic: tuple[Traffic, ...]
    calendars: Mapping[str, BusinessCalendar] = field(default_factory=dict)
    interruptions: InterruptionMatrix = DEFAULT_INTERRUPTIONS  # the centre's blend

    @property
    def agent_count(self) -> int:
        return sum(g.count for g in self.agents)

    def queue(self, name: str) -> QueueSpec:
        return next(q for q in self.queues if q.name == name)


def load(path: str | Path) -> Scenario:
    """Read and check a scenario file (InvalidValue for a missing, unreadable or bad one)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidValue(f"scenario {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidValue(f"scenario {path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValue(f"scenario {path}: not TOML: {exc}") from None
    try:
        return parse(data)
    except InvalidValue as exc:
        raise InvalidValue(f"scenario {path}: {exc}") from None


def parse(data: Mapping[str, Any]) -> Scenario:
    known = {"scenario", "calendars", "queues", "agents", "traffic"}
    _no_other(data, known, "")
    head = _table(data.get("scenario", {}), "scenario")
    _no_other(head, {"name", "date", "timezone", "days", "seed", "interruptions"},
              "scenario.")
    timezone = _str(head.get("timezone", "UTC"), "scenario.timezone")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue(f"scenario.timezone: unknown time zone {timezone!r}") from None
    day = head.get("date", date(2026, 3, 2))
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day)
        except ValueError:
            day = None
    if not isinstance(day, date) or isinstance(day, datetime):
        raise InvalidValue(f"scenario.date: a date such as 2026-03-02, got {head['date']!r}")
    start = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    days = _int(head.get("days", 1), "scenario.days", 1, MAX_DAYS)
    seed = _int(head.get("seed", 1), "scenario.seed", 0, 2**63)
    calendars = {}
    for name, spec in _table(data.get("calendars", {}), "calendars").items():
        where = f"calendars.{name}"
        spec = _table(spec, where)
        _no_other(spec, {"timezone", "hours", "holidays"}, where + ".")
        try:
            calendars[name] = BusinessCalendar.from_spec(
                name, spec.get("timezone", timezone), spec.get("hours", {}),
                spec.get("holidays", []))
        except InvalidValue as exc:
            raise InvalidValue(f"{where}: {exc}") from None
    queues = tuple(_queue(q, f"queues[{i}]", calendars)
                   for i, q in enumerate(_list(data.get("queues"), "queues")))
    names = [q.name for q in queues]
    for name in names:
        if names.count(name) > 1:
            raise InvalidValue(f"queues: {name!r} is named twice")
    agents = tuple(_group(g, f"agents[{i}]", set(names))
                   for i, g in enumerate(_list(data.get("agents", [{}]), "agents")))
    traffic = tuple(_traffic(t, f"traffic[{i}]", set(names))
                    for i, t in enumerate(_list(data.get("traffic"), "traffic")))
    blend = interruptions(head.get("interruptions", DEFAULT_INTERRUPTIONS.text()),
                          "scenario.interruptions")
    return Scenario(_str(head.get("name", "scenario"), "scenario.name"), start, days, seed,
                    timezone, queues, agents, traffic, calendars, blend)


def _queue(spec: Any, where: str, calendars: Mapping[str, BusinessCalendar]) -> QueueSpec:
    spec = _table(spec, where)
    _no_other(spec, {"name", "skills", "sl_seconds", "sl_share", "deadline", "calendar",
                     "wrap_up_seconds", "reserve"}, where + ".")
    try:
        name = check_queue_name(spec.get("name"))
    except InvalidValue as exc:
        raise InvalidValue(f"{where}.name: {exc}") from None
    targets = dict(DEFAULT_SL_TARGET)
    for ch, seconds in _table(spec.get("sl_seconds", {}), f"{where}.sl_seconds").items():
        targets[_channel(ch, f"{where}.sl_seconds")] = _number(
            seconds, f"{where}.sl_seconds.{ch}", 0)
    share = _number(spec.get("sl_share", DEFAULT_SL_SHARE), f"{where}.sl_share", 0)
    if not 0 < share <= 1:
        raise InvalidValue(f"{where}.sl_share: a share in (0, 1], got {share:g}")
    deadline = spec.get("deadline")
    if deadline is not None:
        try:
            parse_rule(_str(deadline, f"{where}.deadline"))
        except DomainError as exc:
            raise InvalidValue(f"{where}.deadline: {exc}") from None
    calendar = spec.get("calendar")
    if calendar is not None and calendar not in calendars:
        raise InvalidValue(f"{where}.calendar: no calendar {calendar!r} in [calendars]")
    return QueueSpec(name, _skills(spec.get("skills", {}), f"{where}.skills"), targets, share,
                     deadline, calendar,
                     _number(spec.get("wrap_up_seconds", 0), f"{where}.wrap_up_seconds", 0),
                     _int(spec.get("reserve", 0), f"{where}.reserve", 0, MAX_GROUP))


def _group(spec: Any, where: str, queues: set[str]) -> AgentGroup:
    spec = _table(spec, where)
    _no_other(spec, {"name", "count", "skills", "queues", "channels", "capacity", "shift",
                     "breaks", "interruptions"}, where + ".")
    chosen = frozenset(_str(q, f"{where}.queues") for q in _list(
        spec.get("queues", sorted(queues)), f"{where}.queues"))
    for q in chosen - queues:
        raise InvalidValue(f"{where}.queues: no queue {q!r} in the scenario")
    channels = frozenset(_channel(c, f"{where}.channels") for c in _list(
        spec.get("channels", ["phone", "email"]), f"{where}.channels"))
    if not channels:
        raise InvalidValue(f"{where}.channels: at least one channel")
    capacity = {Channel.PHONE: 1, Channel.EMAIL: 1}
    for ch, n in _table(spec.get("capacity", {}), f"{where}.capacity").items():
        capacity[_channel(ch, f"{where}.capacity")] = _int(n, f"{where}.capacity.{ch}", 0, 100)
    shift = _span(spec.get("shift", ["00:00", "24:00"]), f"{where}.shift")
    breaks = tuple(_span(b, f"{where}.breaks[{i}]")
                   for i, b in enumerate(_list(spec.get("breaks", []), f"{where}.breaks", empty=True)))
    for i, (a, b) in enumerate(breaks):
        if not shift[0] <= a < b <= shift[1]:
            raise InvalidValue(f"{where}.breaks[{i}]: must lie inside the shift")
    return AgentGroup(_str(spec.get("name", "agents"), f"{where}.name"),
                      _int(spec.get("count", 1), f"{where}.count", 0, MAX_GROUP),
                      _skills(spec.get("skills", {}), f"{where}.skills"), chosen, channels,
                      capacity, shift, tuple(sorted(breaks)),
                      None if spec.get("interruptions") is None else interruptions(
                          spec["interruptions"], f"{where}.interruptions"))


def _traffic(spec: Any, where: str, queues: set[str]) -> Traffic:
    spec = _table(spec, where)
    _no_other(spec, {"queue", "channel", "start", "per_interval", "handle", "patience"},
              where + ".")
    queue = _str(spec.get("queue"), f"{where}.queue")
    if queue not in queues:
        raise InvalidValue(f"{where}.queue: no queue {queue!r} in the scenario")
    channel = _channel(spec.get("channel"), f"{where}.channel")
    first = int(_clock(spec.get("start", "00:00"), f"{where}.start") // INTERVAL)
    counts = [_number(n, f"{where}.per_interval", 0)
              for n in _list(spec.get("per_interval"), f"{where}.per_interval")]
    if first + len(counts) > INTERVALS_PER_DAY:
        raise InvalidValue(f"{where}.per_interval: {len(counts)} intervals from the start run "
                           f"past the end of the day ({INTERVALS_PER_DAY - first} at most)")
    profile = [0.0] * INTERVALS_PER_DAY
    profile[first:first + len(counts)] = counts
    handle = _table(spec.get("handle"), f"{where}.handle")
    _no_other(handle, {"distribution", "mean", "sd"}, f"{where}.handle.")
    kind = handle.get("distribution", "exponential")
    if kind not in DISTRIBUTIONS:
        raise InvalidValue(f"{where}.handle.distribution: one of {', '.join(DISTRIBUTIONS)}, "
                           f"got {kind!r}")
    mean = _number(handle.get("mean"), f"{where}.handle.mean", 0, strict=True)
    sd = _number(handle.get("sd", 0), f"{where}.handle.sd", 0)
    if kind == "lognormal" and sd <= 0:
        raise InvalidValue(f"{where}.handle.sd: a lognormal needs an sd more than 0")
    patience = spec.get("patience")
    if patience is not None:
        if channel is not Channel.PHONE:
            raise InvalidValue(f"{where}.patience: only callers abandon (channel phone)")
        patience = _number(patience, f"{where}.patience", 0, strict=True)
    return Traffic(queue, channel, tuple(profile), HandleTime(kind, mean, sd), patience)


# -- small checkers: each names the key it checks -------------------------------------------


def _no_other(spec: Mapping[str, Any], known: set[str], prefix: str) -> None:
    for key in spec:
        if key not in known:
            raise InvalidValue(f"{prefix}{key}: unknown key (known: {', '.join(sorted(known))})")


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidValue(f"{where}: a table is needed, got {value!r}")
    return value


def _list(value: Any, where: str, empty: bool = False) -> list[Any]:
    if not isinstance(value, list) or not (value or empty):
        raise InvalidValue(f"{where}: a non-empty list is needed, got {value!r}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidValue(f"{where}: a non-empty string is needed, got {value!r}")
    return value


def _number(value: Any, where: str, low: float, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < low or (strict and value == low):
        relation = "more than" if strict else "at least"
        raise InvalidValue(f"{where}: a number {relation} {low:g} is needed, got {value!r}")
    return float(value)


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidValue(f"{where}: an integer {low}-{high} is needed, got {value!r}")
    return value


def _channel(value: Any, where: str) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        raise InvalidValue(f"{where}: a channel (phone or email), got {value!r}") from None


def _skills(value: Any, where: str) -> dict[str, int]:
    out = {}
    for name, level in _table(value, where).items():
        out[name] = _int(level, f"{where}.{name}", MIN_LEVEL, MAX_LEVEL)
    return out


def _clock(value: Any, where: str) -> float:
    text = _str(value, where)
    hours, _, minutes = text.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise InvalidValue(f"{where}: a time 'HH:MM' is needed, got {value!r}")
    seconds = int(hours) * 3600 + int(minutes) * 60
    if int(minutes) >= 60 or seconds > DAY:
        raise InvalidValue(f"{where}: {value!r} is not a time of day (00:00 to 24:00)")
    return float(seconds)


def _span(value: Any, where: str) -> tuple[float, float]:
    pair = _list(value, where)
    if len(pair) != 2:
        raise InvalidValue(f"{where}: a pair [\"HH:MM\", \"HH:MM\"] is needed, got {value!r}")
    a, b = _clock(pair[0], f"{where}[0]"), _clock(pair[1], f"{where}[1]")
    if b <= a:
        raise InvalidValue(f"{where}: ends at or before it starts ({pair[0]} - {pair[1]})")
    return a, b
