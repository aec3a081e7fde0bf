"""The admin edge's reading of command-line values and its small printing helpers.

`billing=5,french=3`, `phone=1,email=3`, `60:billing=2,french=-`, opening hours and the like
are parsed here into domain values with a clear `InvalidValue` for a bad one; the rules of a
change are the services'. Who changes things from the command line is `operator()` (actor
`operator` and the OS user), for the services' audit.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from typing import Any

from dispatcher.domain import events as ev
from dispatcher.domain.deadlines import WEEKDAY_NAMES
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.queues import EscalationStep
from dispatcher.domain.tasks import Channel

JSON_HELP = "print JSON instead of text"
# In a command's help: the change reaches a running server without a restart.
LIVE_HELP = " (a running server applies it within a few seconds)"

ALL_ROWS = 2**62  # `--limit 0`: a LIMIT every database takes
NOT_LIVE = "a running server applies it within a few seconds"


def os_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment: audit without it
        return None


def operator() -> dict[str, Any]:
    """Who changes the configuration from the command line: `actor` and `user` arguments."""
    return {"actor": ev.OPERATOR, "user": os_user()}


def nothing_yet(what: str, hint: str = "") -> None:
    print(f"no {what} yet" + (f" ({hint})" if hint else ""))


def parse_levels(text: str, allow_drop: bool = False) -> dict[str, Any]:
    """'billing=5,french=3' -> {'billing': 5, 'french': 3}; with allow_drop, 'x=-' -> None."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise InvalidValue(f"expected skill=level, got {part!r}")
        value = value.strip()
        if allow_drop and value == "-":
            out[name.strip()] = None
        elif value.isdigit():
            out[name.strip()] = int(value)
        else:
            raise InvalidValue(f"{name}: level must be a whole number 0-10, got {value!r}")
    return out


def parse_channels(text: str, kind=float) -> dict[Channel, Any]:
    """'phone=1,email=3' -> {Channel.PHONE: 1, Channel.EMAIL: 3}."""
    out = {}
    for name, value in parse_pairs(text).items():
        try:
            out[Channel(name)] = kind(value)
        except ValueError:
            raise InvalidValue(f"expected phone=N or email=N, got {name}={value}") from None
    return out


def parse_pairs(text: str) -> dict[str, str]:
    pairs = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise InvalidValue(f"expected name=value, got {part!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def parse_dispositions(text: str) -> tuple[tuple[str, str], ...]:
    """'solved=Solved,callback=Call back later' -> (('solved', 'Solved'), ('callback', ...)),
    in the order given (the console lists them so); Queue checks codes and labels."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        code, sep, label = part.partition("=")
        if not sep:
            raise InvalidValue(f"expected code=Label, got {part!r}")
        out.append((code.strip(), label.strip()))
    return tuple(out)


def parse_step(text: str) -> EscalationStep:
    """'60:billing=2,french=-' -> after 60 s, billing >= 2 and french no longer required;
    '600:billing=-:tier != "trainee"' also replaces the requirement expression from then on
    (an empty one after the second ':' drops it)."""
    after, sep, rest = text.partition(":")
    shape = "expected SECONDS:skill=level,...[:EXPRESSION]"
    try:
        seconds = float(after)
    except ValueError:
        raise InvalidValue(f"escalation step {text!r}: {shape}") from None
    if not sep:
        raise InvalidValue(f"escalation step {text!r}: {shape}")
    req, sep, expression = rest.partition(":")
    return EscalationStep(seconds, parse_levels(req, allow_drop=True),
                          expression.strip() if sep else None)


def parse_attributes(items: list[str]) -> dict[str, Any]:
    """`--attribute NAME=VALUE`, each: a VALUE that reads as JSON (5, true, ["fr", "en"]) is
    that; else text with commas is a list of texts (`languages=fr,en`); else one text."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise InvalidValue(f"attribute {item!r}: expected NAME=VALUE")
        raw = raw.strip()
        try:
            value = json.loads(raw)
        except ValueError:
            value = [v.strip() for v in raw.split(",") if v.strip()] if "," in raw else raw
        out[name.strip()] = value
    return out


def when(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def parse_channel_names(text: str) -> set[Channel]:
    """'email,phone' -> {Channel.EMAIL, Channel.PHONE}."""
    out = set()
    for name in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.add(Channel(name))
        except ValueError:
            raise InvalidValue(f"unknown channel {name!r} (known: email, phone)") from None
    return out


def age(seconds: float) -> str:
    """1h05m, 3d2h, 45s: how long ago, for a person."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes}m"
    if days < 1:
        return f"{hours}h{minutes % 60:02d}m"
    return f"{days}d{hours % 24}h"


def parse_hours(text: str) -> dict[str, list[list[str]]]:
    """'mon-fri=09:00-12:30,13:30-18:00;sat=09:00-12:00' -> {'mon': [['09:00','12:30'], ...]}."""
    hours: dict[str, list[list[str]]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        days, sep, spans = part.partition("=")
        if not sep:
            raise InvalidValue(f"opening hours {part!r}: expected DAYS=HH:MM-HH:MM,...")
        first, _, last = days.strip().lower().partition("-")
        try:
            lo = WEEKDAY_NAMES.index(first)
            hi = WEEKDAY_NAMES.index(last) if last else lo
        except ValueError:
            raise InvalidValue(f"opening hours {part!r}: days are mon..sun") from None
        intervals = []
        for span in filter(None, (x.strip() for x in spans.split(","))):
            start, dash, end = span.partition("-")
            if not dash:
                raise InvalidValue(f"opening hours {span!r}: expected HH:MM-HH:MM")
            intervals.append([start.strip(), end.strip()])
        for i in range(lo, hi + 1):
            hours[WEEKDAY_NAMES[i]] = intervals
    return hours
