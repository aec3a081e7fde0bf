"""Callbacks: a phone task that is a call to make, not a call held (issue 18, item 2).

Pure domain (stdlib only, time passed in). A callback task is an ordinary phone task of its
queue whose attributes carry `source = "callback"` and a `callback` map:

    {"number": "+33...", "origin": "ivr" | "web" | "api", "not_before": t | None,
     "not_after": t | None, "attempts": n, "max_attempts": n, "requested_at": t}

It waits in the same queue as the calls, ordered by its `created_at`: a caller who keeps their
place (`ivr`) keeps their call's arrival; a web or API callback's age starts at its window's
start. While `not_before` is ahead the router holds it aside (`Router.park`): it is not offered.
What this module promises: the validation of a request (`request`), the attribute map written
on the task, and the reading of it (`callback_of`, `number_of`), each in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import DomainError, InvalidValue

SOURCE = "callback"  # the task attribute `source` of a callback task
ATTRIBUTE = "callback"  # the task attribute holding the callback's map
NOT_BEFORE = "not_before"  # top-level task attribute: the router holds the task aside until then
ORIGINS = ("ivr", "web", "api")
DEFAULT_ATTEMPTS = 3
MAX_ATTEMPTS = 10
MAX_WINDOW_SECONDS = 90 * 86400  # a window opening more than 90 days ahead is refused
MAX_NUMBER_DIGITS = 20
_KEEP = re.compile(r"[\s().\-/]")
_NUMBER = re.compile(rf"^\+?[0-9]{{3,{MAX_NUMBER_DIGITS}}}$")
# What ends a callback that was never reached (the task is cancelled with this reason).
NOT_REACHED = "callback_not_reached"


class CallNotWaiting(DomainError):
    """Keep place asked for a call that no longer waits (answered, ended, unknown)."""

    code = "call_not_waiting"

    def __init__(self, call_id: str, state: str) -> None:
        super().__init__(f"call {call_id!r} is not waiting ({state}): it cannot be called back")
        self.call_id, self.state = call_id, state


class NoCallbackNumber(DomainError):
    """The caller is anonymous or their number cannot be dialled."""

    code = "no_callback_number"

    def __init__(self, what: str) -> None:
        super().__init__(f"no number to call back: {what}")


def callback_number(text: object) -> str:
    """A dialable number from what a caller's From or a form gave: digits with an optional
    leading '+', separators dropped. Raises NoCallbackNumber."""
    if not isinstance(text, str) or not text.strip():
        raise NoCallbackNumber("anonymous")
    value = _KEEP.sub("", text.strip())
    if value.lower().startswith("tel:"):
        value = value[4:]
    if not _NUMBER.match(value):
        raise NoCallbackNumber(f"{text[:40]!r} is not a phone number")
    return value


def request(number: object, origin: str, now: float, *, not_before: float | None = None,
            not_after: float | None = None, max_attempts: int = DEFAULT_ATTEMPTS
            ) -> dict[str, Any]:
    """The callback map of a new request (validated). Raises InvalidValue / NoCallbackNumber."""
    if origin not in ORIGINS:
        raise InvalidValue(f"unknown callback origin {origin!r}")
    for name, value in (("not_before", not_before), ("not_after", not_after)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidValue(f"{name} must be a time in seconds")
    if not_before is not None and not_before > now + MAX_WINDOW_SECONDS:
        raise InvalidValue("the window opens too far ahead (90 days at most)")
    if not_after is not None:
        if not_after <= now:
            raise InvalidValue("the window is already over")
        if not_before is not None and not_after <= not_before:
            raise InvalidValue("the window ends before it starts")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) \
            or not 1 <= max_attempts <= MAX_ATTEMPTS:
        raise InvalidValue(f"attempts must be 1-{MAX_ATTEMPTS}")
    return {"number": callback_number(number), "origin": origin,
            "not_before": None if not_before is None else float(not_before),
            "not_after": None if not_after is None else float(not_after),
            "attempts": 0, "max_attempts": max_attempts, "requested_at": now}


def arrival(callback: Mapping[str, Any], now: float) -> float:
    """The `created_at` of a new web/API callback task: its window's start (now when the
    window is open already)."""
    start = callback.get("not_before")
    return float(start) if isinstance(start, int | float) and start > now else now


def is_callback(attributes: Mapping[str, Any]) -> bool:
    return attributes.get("source") == SOURCE and isinstance(attributes.get(ATTRIBUTE), dict)


def callback_of(attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    """The callback map of a task's attributes, or None for any other task."""
    return attributes.get(ATTRIBUTE) if is_callback(attributes) else None  # type: ignore[return-value]


def number_of(attributes: Mapping[str, Any]) -> str | None:
    cb = callback_of(attributes)
    return None if cb is None else cb.get("number")


def held_until(attributes: Mapping[str, Any], now: float) -> float | None:
    """Until when the router holds the task aside (not offered), or None when it may be
    offered now."""
    until = attributes.get(NOT_BEFORE)
    if isinstance(until, int | float) and not isinstance(until, bool) and until > now:
        return float(until)
    return None


def attempt_made(callback: Mapping[str, Any]) -> dict[str, Any]:
    """The map after one more attempt to reach the customer."""
    return {**callback, "attempts": int(callback.get("attempts") or 0) + 1}


def may_retry(callback: Mapping[str, Any], retry_at: float) -> bool:
    """Whether another attempt is allowed at `retry_at`: attempts left, window not over."""
    if int(callback.get("attempts") or 0) >= int(callback.get("max_attempts")
                                                   or DEFAULT_ATTEMPTS):
        return False
    end = callback.get("not_after")
    return not (isinstance(end, int | float) and retry_at >= end)
