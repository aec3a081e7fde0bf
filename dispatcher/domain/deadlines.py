"""Deadlines: business calendars and the two deadline rules (sliding and scheduled).

Sits in the pure domain: standard library only, no I/O and no clock reads. Every instant comes
in and goes out as a float, seconds since the Unix epoch (UTC); calendars hold *local* wall-clock
opening hours in an IANA time zone and do the conversion with `zoneinfo`.

What it promises:

- An opening at 09:00 is 09:00 wall-clock on both sides of a DST change. Opening intervals are
  half-open, ``[start, end)``; an end of ``time(0, 0)`` (written ``"24:00"`` in a spec) means the
  end of the local day, so ``20:00-24:00`` on one day and ``00:00-02:00`` on the next count as
  one continuous stretch.
- A local time that does not exist (inside a spring-forward gap) maps to the transition instant,
  so an opening lying wholly inside the gap is empty that day and one straddling it is shorter;
  an ambiguous local time (fall-back) maps to its first occurrence, so an opening straddling the
  repeated hour is longer. The business time of a day is always the real elapsed time.
- Counting walks the calendar one opening interval (one local day) at a time, never one second
  at a time: thousands of business hours cost a few hundred day steps.
- Invalid input raises `InvalidValue` with a message saying what was wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidValue

__all__ = [
    "ALWAYS_OPEN",
    "BusinessCalendar",
    "DeadlineRule",
    "ScheduledDeadline",
    "SlidingDeadline",
    "extend_for_pause",
    "format_rule",
    "parse_rule",
]

SECONDS_PER_MINUTE = 60
MINUTES_PER_HOUR = 60
SECONDS_PER_HOUR = SECONDS_PER_MINUTE * MINUTES_PER_HOUR
HOURS_PER_DAY = 24
DAYS_PER_YEAR = 365
ONE_DAY = timedelta(days=1)

# Weekday names in a calendar spec, index = `date.weekday()` (0 = Monday).
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# An interval end equal to this time means the end of the local day ("24:00").
END_OF_DAY = time(0, 0)
END_OF_DAY_SPEC = "24:00"

# Upper bounds on rules, so a typo in a queue's configuration cannot make a due-time computation
# walk the calendar for millennia: ten years of round-the-clock hours, one year of business days.
MAX_SLIDING_HOURS = 10 * DAYS_PER_YEAR * HOURS_PER_DAY
CACHED_DAYS = 1024  # days of openings a calendar keeps worked out (`_openings_on`)
MAX_BUSINESS_DAYS_AFTER = DAYS_PER_YEAR
DEFAULT_BUSINESS_DAYS_AFTER = 1

_CLOCK_RE = re.compile(r"(\d{1,2}):(\d{2})")
_SLIDING_RE = re.compile(r"sliding\s+(\d+(?:\.\d+)?)\s*([hm]?)")
_SCHEDULED_RE = re.compile(r"scheduled\s+(\d{1,2}:\d{2})(?:\s+\+(\d+))?")
ACCEPTED_RULE_FORMS = (
    '"sliding <N>h", "sliding <N>m", "sliding <N>" (hours), '
    '"scheduled <HH:MM> +<days>", "scheduled <HH:MM>" (= +1)'
)


# -- local wall clock <-> epoch ---------------------------------------------------------------


def _wall_to_epoch(wall: datetime, zone: ZoneInfo) -> float:
    """The first instant whose local wall-clock time in `zone` is at or after `wall` (naive).

    For an ordinary or an ambiguous time that is its (first) occurrence; for a time inside a DST
    gap it is the transition instant. The mapping is monotonic, which keeps intervals ordered.
    """
    early = wall.replace(tzinfo=zone, fold=0).timestamp()
    if datetime.fromtimestamp(early, zone).replace(tzinfo=None) == wall:
        return early
    # Inside a gap: fold=1 applies the offset after the change (an instant before it), fold=0
    # the offset before it (an instant after it). Transitions fall on whole seconds.
    lo = math.floor(wall.replace(tzinfo=zone, fold=1).timestamp())
    hi = math.ceil(early)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return float(hi)


def _seconds_into_day(clock: time, *, is_end: bool = False) -> float:
    if is_end and clock == END_OF_DAY:
        return float(HOURS_PER_DAY * SECONDS_PER_HOUR)
    return (
        clock.hour * SECONDS_PER_HOUR
        + clock.minute * SECONDS_PER_MINUTE
        + clock.second
        + clock.microsecond / 1e6
    )


def _parse_clock(text: object, what: str) -> time:
    """Parse "HH:MM" (00:00 to 23:59, or "24:00", which becomes END_OF_DAY) into a time."""
    if not isinstance(text, str):
        raise InvalidValue(f"{what}: expected a time as 'HH:MM', got {text!r}")
    match = _CLOCK_RE.fullmatch(text.strip())
    if match is None:
        raise InvalidValue(f"{what}: expected a time as 'HH:MM', got {text!r}")
    hour, minute = int(match[1]), int(match[2])
    if (hour, minute) == (HOURS_PER_DAY, 0):
        return END_OF_DAY
    if hour >= HOURS_PER_DAY or minute >= MINUTES_PER_HOUR:
        raise InvalidValue(f"{what}: {text!r} is not a time of day (00:00 to 23:59)")
    return time(hour, minute)


# -- calendars -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Weekly opening hours in a time zone, minus whole-day holidays.

    `hours` maps a weekday (0 = Monday .. 6 = Sunday) to its opening intervals in local time,
    sorted and non-overlapping (touching is fine); a missing weekday is closed. An interval end of
    `END_OF_DAY` (``time(0, 0)``) means 24:00. `holidays` are local dates closed all day.
    The constructor validates and freezes `hours`; at least one weekday must have an opening.
    """

    name: str
    timezone: str
    hours: Mapping[int, tuple[tuple[time, time], ...]]
    holidays: frozenset[date] = frozenset()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    # Each day's openings as epoch pairs, worked out once (`_openings_on`): a deadline read for
    # every new e-mail would otherwise redo the same time-zone work.
    _days: dict[date, tuple[tuple[float, float], ...]] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"calendar {self.name!r}"
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise InvalidValue(
                f"{where}: unknown time zone {self.timezone!r} (expected an IANA name such as "
                "'Europe/Paris')"
            ) from None
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_days", {})
        object.__setattr__(self, "hours", MappingProxyType(_checked_hours(self.hours, where)))
        holidays = frozenset(self.holidays)
        for day in holidays:
            if not isinstance(day, date) or isinstance(day, datetime):
                raise InvalidValue(f"{where}: holiday {day!r} is not a date")
        object.__setattr__(self, "holidays", holidays)

    def __hash__(self) -> int:
        return hash((self.name, self.timezone, tuple(sorted(self.hours.items())), self.holidays))

    @classmethod
    def from_spec(
        cls,
        name: str,
        timezone: str,
        hours: Mapping[str, list[list[str]]],
        holidays: Iterable[str] = (),
    ) -> BusinessCalendar:
        """Build a calendar from configuration: ``{"mon": [["09:00", "12:30"], ...], ...}``
        (weekday names "mon".."sun", any case; "24:00" allowed as an end; intervals in any
        order) and ISO holiday dates ("2026-12-25")."""
        where = f"calendar {name!r}"
        if not isinstance(hours, Mapping):
            raise InvalidValue(f"{where}: hours must map weekday names to intervals")
        by_day: dict[int, tuple[tuple[time, time], ...]] = {}
        for key, intervals in hours.items():
            day_name = key.strip().lower() if isinstance(key, str) else key
            if day_name not in WEEKDAY_NAMES:
                raise InvalidValue(
                    f"{where}: unknown weekday {key!r} (expected one of {', '.join(WEEKDAY_NAMES)})"
                )
            weekday = WEEKDAY_NAMES.index(day_name)
            if weekday in by_day:
                raise InvalidValue(f"{where}: weekday {day_name!r} given twice")
            by_day[weekday] = _parse_intervals(intervals, f"{where}, {day_name}")
        if isinstance(holidays, str):
            raise InvalidValue(f"{where}: holidays must be a list of ISO dates, not one string")
        parsed_holidays = frozenset(_parse_holiday(text, where) for text in holidays)
        return cls(name, timezone, by_day, parsed_holidays)

    # -- queries ---------------------------------------------------------------------------

    def is_open(self, t: float) -> bool:
        """Whether `t` falls inside an opening interval (interval ends are closed)."""
        return any(start <= t < end for start, end in self._openings_on(self._local_date(t)))

    def next_opening(self, t: float) -> float:
        """`t` itself if open, else the start of the next opening interval."""
        start, _ = next(self._openings_from(t))
        return max(start, t)

    def add_business_seconds(self, start: float, seconds: float) -> float:
        """The instant at which `seconds` of open time have elapsed after `start`.

        Counting begins at `next_opening(start)`, so 0 seconds gives `next_opening(start)`. When
        the count runs out exactly at the end of an interval, the result is that end (a closed
        instant), not the next opening.
        """
        if not math.isfinite(seconds) or seconds < 0:
            raise InvalidValue(f"business seconds must be finite and >= 0, got {seconds!r}")
        remaining = seconds
        for opens, closes in self._openings_from(start):
            opens = max(opens, start)
            available = closes - opens
            if remaining <= available:
                return opens + remaining
            remaining -= available
        raise AssertionError("unreachable: the calendar has openings every week")

    def business_seconds_between(self, a: float, b: float) -> float:
        """Open seconds in ``[a, b)``; 0 if ``b <= a``."""
        if b <= a:
            return 0.0
        total = 0.0
        for opens, closes in self._openings_from(a):
            if opens >= b:
                break
            total += min(closes, b) - max(opens, a)
        return total

    def business_day(self, t: float, n: int) -> date:
        """The n-th business day after the local date of `t` (n = 0: that date if it is a
        business day, else the next one). A business day is a weekday with configured hours
        that is not a holiday."""
        if n < 0:
            raise InvalidValue(f"business day offset must be >= 0, got {n}")
        day = self._local_date(t)
        if n == 0:
            while not self._is_business_day(day):
                day += ONE_DAY
            return day
        while n:
            day += ONE_DAY
            if self._is_business_day(day):
                n -= 1
        return day

    # -- internals -------------------------------------------------------------------------

    def _local_date(self, t: float) -> date:
        return datetime.fromtimestamp(t, self._zone).date()

    def _is_business_day(self, day: date) -> bool:
        return day not in self.holidays and bool(self.hours.get(day.weekday()))

    def _instant(self, day: date, clock: time, *, is_end: bool = False) -> float:
        """Local `clock` on `day` as an epoch instant (END_OF_DAY as an end = next midnight)."""
        if is_end and clock == END_OF_DAY:
            wall = datetime.combine(day + ONE_DAY, END_OF_DAY)
        else:
            wall = datetime.combine(day, clock)
        return _wall_to_epoch(wall, self._zone)

    def _openings_on(self, day: date) -> tuple[tuple[float, float], ...]:
        """The day's non-empty opening intervals as epoch ``(start, end)`` pairs, in order
        (kept: at most CACHED_DAYS days a calendar, then worked out afresh)."""
        spans = self._days.get(day)
        if spans is None:
            spans = self._work_out(day)
            if len(self._days) >= CACHED_DAYS:
                self._days.clear()
            self._days[day] = spans
        return spans

    def _work_out(self, day: date) -> tuple[tuple[float, float], ...]:
        if day in self.holidays:
            return ()
        spans = []
        for start, end in self.hours.get(day.weekday(), ()):
            opens, closes = self._instant(day, start), self._instant(day, end, is_end=True)
            if closes > opens:
                spans.append((opens, closes))
        return tuple(spans)

    def _openings_from(self, t: float) -> Iterator[tuple[float, float]]:
        """Every opening interval that ends after `t`, in order, endlessly."""
        day = self._local_date(t)
        while True:
            for opens, closes in self._openings_on(day):
                if closes > t:
                    yield opens, closes
            day += ONE_DAY


def _checked_hours(
    hours: Mapping[int, Iterable[tuple[time, time]]], where: str
) -> dict[int, tuple[tuple[time, time], ...]]:
    if not isinstance(hours, Mapping):
        raise InvalidValue(f"{where}: hours must map weekdays (0 = Monday) to intervals")
    checked: dict[int, tuple[tuple[time, time], ...]] = {}
    for weekday, intervals in hours.items():
        if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
            raise InvalidValue(f"{where}: weekday {weekday!r} is not 0 (Monday) .. 6 (Sunday)")
        try:
            spans = tuple(tuple(pair) for pair in intervals)
        except TypeError:
            raise InvalidValue(
                f"{where}: weekday {weekday} needs a sequence of (start, end) pairs"
            ) from None
        previous_end = 0.0
        for pair in spans:
            if len(pair) != 2 or not all(isinstance(c, time) for c in pair):
                raise InvalidValue(f"{where}: interval {pair!r} is not a (start, end) time pair")
            start, end = pair
            if start.tzinfo is not None or end.tzinfo is not None:
                raise InvalidValue(f"{where}: opening times are local, without a tzinfo")
            start_s, end_s = _seconds_into_day(start), _seconds_into_day(end, is_end=True)
            if end_s <= start_s:
                raise InvalidValue(
                    f"{where}: interval {_show(start)}-{_show(end, True)} ends before it starts"
                )
            if start_s < previous_end:
                raise InvalidValue(
                    f"{where}, {WEEKDAY_NAMES[weekday]}: interval {_show(start)}-"
                    f"{_show(end, True)} overlaps or precedes the one before (intervals must be "
                    "sorted and non-overlapping)"
                )
            previous_end = end_s
        if spans:
            checked[weekday] = spans  # type: ignore[assignment]
    if not checked:
        raise InvalidValue(f"{where}: never opens (no weekday has opening hours)")
    return checked


def _show(clock: time, is_end: bool = False) -> str:
    return END_OF_DAY_SPEC if is_end and clock == END_OF_DAY else clock.strftime("%H:%M")


def _parse_intervals(intervals: object, where: str) -> tuple[tuple[time, time], ...]:
    if isinstance(intervals, str) or not isinstance(intervals, Iterable):
        raise InvalidValue(f"{where}: expected a list of [start, end] pairs, got {intervals!r}")
    spans = []
    for pair in intervals:
        if isinstance(pair, str) or not isinstance(pair, Iterable) or len(pair := list(pair)) != 2:
            raise InvalidValue(f"{where}: expected a [start, end] pair, got {pair!r}")
        start, end = _parse_clock(pair[0], where), _parse_clock(pair[1], where)
        if pair[0].strip() == END_OF_DAY_SPEC:
            raise InvalidValue(f"{where}: an interval cannot start at 24:00")
        if end == END_OF_DAY and pair[1].strip() != END_OF_DAY_SPEC:
            raise InvalidValue(f"{where}: an interval cannot end at 00:00 (write 24:00)")
        if _seconds_into_day(end, is_end=True) <= _seconds_into_day(start):
            raise InvalidValue(f"{where}: interval {pair[0]}-{pair[1]} ends before it starts")
        spans.append((start, end))
    spans.sort(key=lambda span: _seconds_into_day(span[0]))
    return tuple(spans)


def _parse_holiday(text: object, where: str) -> date:
    if isinstance(text, date) and not isinstance(text, datetime):
        return text
    try:
        return date.fromisoformat(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidValue(
            f"{where}: holiday {text!r} is not an ISO date like '2026-12-25'"
        ) from None


ALWAYS_OPEN = BusinessCalendar(
    name="always_open",
    timezone="UTC",
    hours={weekday: ((time(0, 0), END_OF_DAY),) for weekday in range(len(WEEKDAY_NAMES))},
)


# -- rules -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlidingDeadline:
    """Due `business_hours` of open time after arrival (0 < hours <= MAX_SLIDING_HOURS)."""

    business_hours: float

    def __post_init__(self) -> None:
        hours = self.business_hours
        if isinstance(hours, bool) or not isinstance(hours, int | float):
            raise InvalidValue(f"sliding deadline hours must be a number, got {hours!r}")
        if not 0 < hours <= MAX_SLIDING_HOURS:
            raise InvalidValue(
                f"sliding deadline must be more than 0 and at most {MAX_SLIDING_HOURS} business "
                f"hours, got {self.business_hours!r}"
            )

    def due(self, arrival: float, calendar: BusinessCalendar) -> float:
        return calendar.add_business_seconds(arrival, self.business_hours * SECONDS_PER_HOUR)


@dataclass(frozen=True, slots=True)
class ScheduledDeadline:
    """Due at local time `at` on a business day: the `business_days_after`-th business day after
    the arrival's local date; with 0, the arrival's date if it is a business day and `at` is still
    ahead, else the next business day. `at` has minute resolution and no tzinfo."""

    at: time
    business_days_after: int = DEFAULT_BUSINESS_DAYS_AFTER

    def __post_init__(self) -> None:
        if not isinstance(self.at, time):
            raise InvalidValue(f"scheduled deadline time must be a datetime.time, got {self.at!r}")
        if self.at.tzinfo is not None or self.at.second or self.at.microsecond:
            raise InvalidValue(
                f"scheduled deadline time must be a local HH:MM, got {self.at.isoformat()}"
            )
        days = self.business_days_after
        if isinstance(days, bool) or not isinstance(days, int):
            raise InvalidValue(f"business_days_after must be an integer, got {days!r}")
        if not 0 <= days <= MAX_BUSINESS_DAYS_AFTER:
            raise InvalidValue(
                f"business_days_after must be 0 to {MAX_BUSINESS_DAYS_AFTER}, got {days}"
            )

    def due(self, arrival: float, calendar: BusinessCalendar) -> float:
        day = calendar.business_day(arrival, self.business_days_after)
        due = calendar._instant(day, self.at)
        if self.business_days_after == 0 and due <= arrival:
            due = calendar._instant(calendar.business_day(arrival, 1), self.at)
        return due


DeadlineRule = SlidingDeadline | ScheduledDeadline


def parse_rule(spec: str) -> DeadlineRule:
    """Parse a queue's deadline rule: "sliding 24h", "sliding 90m", "sliding 8" (hours),
    "scheduled 12:00 +1", "scheduled 17:30 +0", "scheduled 12:00" (= +1). Case and extra
    blanks are ignored."""
    text = " ".join(spec.split()).lower() if isinstance(spec, str) else ""
    if match := _SLIDING_RE.fullmatch(text):
        amount = float(match[1])
        hours = amount / MINUTES_PER_HOUR if match[2] == "m" else amount
        return SlidingDeadline(hours)
    if match := _SCHEDULED_RE.fullmatch(text):
        at = _parse_clock(match[1], f"deadline rule {spec!r}")
        if at == END_OF_DAY and match[1] == END_OF_DAY_SPEC:
            raise InvalidValue(f"deadline rule {spec!r}: use 00:00 of the next day, not 24:00")
        days = int(match[2]) if match[2] is not None else DEFAULT_BUSINESS_DAYS_AFTER
        return ScheduledDeadline(at, days)
    raise InvalidValue(f"unknown deadline rule {spec!r}; accepted forms: {ACCEPTED_RULE_FORMS}")


def format_rule(rule: DeadlineRule) -> str:
    """The canonical spec of `rule`; ``parse_rule(format_rule(rule)) == rule``. Sliding rules are
    written in whole hours ("sliding 24h") when exact, else whole minutes ("sliding 90m"), else
    decimal hours; scheduled rules always carry the day offset ("scheduled 12:00 +1")."""
    if isinstance(rule, ScheduledDeadline):
        return f"scheduled {rule.at.strftime('%H:%M')} +{rule.business_days_after}"
    hours = float(rule.business_hours)
    if hours.is_integer():
        return f"sliding {int(hours)}h"
    minutes = round(hours * MINUTES_PER_HOUR)
    if minutes and float(minutes) / MINUTES_PER_HOUR == hours:
        return f"sliding {minutes}m"
    return f"sliding {Decimal(repr(hours)):f}h"


def extend_for_pause(
    deadline: float, paused_from: float, paused_to: float, calendar: BusinessCalendar
) -> float:
    """Push `deadline` later by the business time elapsed in ``[paused_from, paused_to)``,
    counted in business time from the old deadline. A pause holding no business time leaves the
    deadline exactly as it was (it is not moved to the next opening)."""
    if paused_to < paused_from:
        raise InvalidValue(f"pause ends ({paused_to}) before it starts ({paused_from})")
    paused = calendar.business_seconds_between(paused_from, paused_to)
    if paused == 0:
        return deadline
    return calendar.add_business_seconds(deadline, paused)
