"""The contact form's "call me back" as a phone callback (issue 18): besides the e-mail task
(whose priority it raises, form.py), a submission that asks for a call back becomes a callback
task through `dispatcher.service.callbacks`, in the same queue, at the window the visitor gave.

Part of the e-mail edge (form.py calls it once the mail is committed); no I/O of its own.
What it promises:
- `window(fields)`: the optional `callback_from` / `callback_until` fields, ISO 8601 date-times
  (`2026-12-07T14:00`, an offset allowed; without one they are UTC) or seconds since the epoch,
  as (not_before, not_after); a bad one is a problem for that field (400 with the others).
- `request(...)`: the callback asked with origin `web`, the visitor's name and address and the
  mail's request number as its note. The number joins the customer who wrote (one history)
  only when the submission's own mail created that customer: a visitor who types a known
  customer's address gets a callback, not their history (a supervisor merges the two cards).
  A refusal (the number cannot be dialled, the queue takes no work) is logged, never fails the
  submission: the mail is stored and its priority says "call back" already.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred

log = logging.getLogger(__name__)

WINDOW_FIELDS = ("callback_from", "callback_until")


def moment(text: str) -> float:
    """Seconds since the epoch from an ISO 8601 date-time (UTC when it names no offset) or a
    number. Raises ValueError."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def window(fields: dict[str, str]) -> tuple[float | None, float | None, dict[str, str]]:
    """(not_before, not_after, problems) of a submission's window fields."""
    out: list[float | None] = []
    problems: dict[str, str] = {}
    for name in WINDOW_FIELDS:
        text = fields.get(name, "").strip()
        if not text:
            out.append(None)
            continue
        try:
            out.append(moment(text[:40]))
        except (ValueError, OverflowError):
            out.append(None)
            problems[name] = "a date and time such as 2026-12-07T14:00 (UTC)"
    return out[0], out[1], problems


def request(callbacks: Any, *, number: str, queue: str, name: str, email: str,
            not_before: float | None, not_after: float | None, note: str,
            vouched: bool = False) -> Deferred:
    """Ask for the callback; fires with the task or None (refused: logged). `vouched`: the
    submission's own mail created the address's customer, so the number may join them."""
    d = callbacks.request(number, queue, origin="web", not_before=not_before,
                          not_after=not_after, name=name, email=email, note=note,
                          actor="web:contact", vouched=vouched)

    def refused(failure: Any) -> None:
        log.warning("form: call back to %s not queued: %s", number, failure.getErrorMessage())

    return d.addErrback(refused)
