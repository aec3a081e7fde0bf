"""What every edge shares about hostile input: one bounded JSON reader, and incident ids for
the failures nobody expected.

Sits in the service layer so that every edge (the console, the phone edge's CTI, the e-mail
edge's web form) can import it without importing each other; it does no I/O and reads no clock
(`now` is passed in).

- `read_json(text)`: a JSON document, or `NotJson` (a ValueError whose message a client may
  see). Nesting deeper than `MAX_DEPTH` is refused before the decoder runs (a scan of the
  brackets outside strings), so a document 30,000 levels deep is an error, not a RecursionError
  (still caught, as a fallback). Also refused: bytes that are not UTF-8, `NaN`/`Infinity`
  (not JSON), integers longer than the interpreter allows, and strings holding a lone
  surrogate (RFC 7493, I-JSON: such a string cannot be stored, sent or encoded later).
- `read_frame(raw, types)`: one request of a JSON protocol (the console's WebSocket, the CTI's
  WebSocket and `POST /cti/events`): a JSON object with a string `type` among `types` and an
  optional `id` that is a string or an integer (never a boolean, a float or null-like junk);
  otherwise `BadFrame` with the protocol-neutral code `bad_message` or `unknown_type` and the
  request's `id` when it could be read. Socket frames are text (`text_only`); an HTTP body may
  be UTF-8 bytes; `string_field` reads a bounded string field. Each protocol's BadMessage is a
  BadFrame (agent_console/messages.py,
  channels/phone/messages.py), raised here, so the two agree on every rule and every code.
- `Incidents`: an unexpected exception gets a short id (`incident`), which the client is told
  and which is in the single log line about it (with the trace); identical failures (same
  exception type at the same place) are written at most once per `interval`, the ids of those
  held back listed in the next line written.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import traceback
from collections import OrderedDict
from collections.abc import Container, Hashable, Iterator
from itertools import accumulate
from typing import Any

from dispatcher.guard import LOG_INTERVAL_SECONDS, Throttled

MAX_DEPTH = 32  # arrays and objects inside each other; our messages use 4 at most
MAX_HELD_IDS = 20  # incident ids remembered per failure between two lines
MAX_FAILURE_KINDS = 1000

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_ASCII_BUT_BRACKETS = str.maketrans("", "", "".join(chr(c) for c in range(128)
                                                    if chr(c) not in "[]{}"))
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = "a string holds a lone surrogate (U+D800-U+DFFF): not Unicode text"


class NotJson(ValueError):
    """The input is not a JSON document this server reads; the message says why."""


def _levels(text: str) -> Iterator[int]:
    """The nesting level after each bracket of `text` outside strings (lazily, in C)."""
    brackets = _STRING.sub("", text).translate(_ASCII_BUT_BRACKETS)
    if not brackets.isascii():  # not JSON: characters outside strings; json.loads says so
        brackets = _NOT_BRACKET.sub("", brackets)
    return accumulate(map(_STEP.__getitem__, brackets))


def depth(text: str) -> int:
    """How deep arrays and objects nest in `text` (brackets inside strings do not count)."""
    return max(_levels(text), default=0)


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects nest deeper than `limit` in `text`; stops at the first
    bracket past it. Only a text with more opening brackets than `limit` is scanned."""
    if text.count("[") + text.count("{") <= limit:
        return False
    return next(filter(limit.__lt__, _levels(text)), None) is not None


def _constant(name: str) -> Any:
    raise NotJson(f"{name} is not JSON")


def read_json(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The document in `raw` (UTF-8 when bytes); NotJson when it is not one we read."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise NotJson("not UTF-8 text") from None
    if not raw.isascii():  # a str from our own code may hold surrogates; decoded bytes cannot
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise NotJson(_LONE_SURROGATE) from None
    if too_deep(raw, max_depth):
        raise NotJson(f"nested deeper than {max_depth} levels")
    try:
        value = json.loads(raw, parse_constant=_constant)
    except NotJson:
        raise
    except RecursionError:
        raise NotJson(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise NotJson("not JSON" if isinstance(exc, json.JSONDecodeError)
                      else f"not JSON: {str(exc)[:100]}") from None
    if "\\u" in raw and _SURROGATE_ESCAPE.search(raw):  # an escaped surrogate: paired?
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise NotJson(_LONE_SURROGATE) from None
    return value


BAD_FRAME = "bad_message"  # the code both JSON protocols use for a frame they cannot read
UNKNOWN_TYPE = "unknown_type"
MAX_TYPE_ECHO_CHARS = 200  # of an unknown `type`, repeated in the error's message


class BadFrame(ValueError):
    """A request that is not one of the protocol's: `code` (BAD_FRAME or UNKNOWN_TYPE), and the
    request's `rid` when it could be read (the error answer repeats it as `re`)."""

    def __init__(self, message: str, code: str = BAD_FRAME, rid: str | int | None = None
                 ) -> None:
        super().__init__(message)
        self.code, self.rid = code, rid


def request_id(msg: dict[str, Any], error: type[BadFrame] = BadFrame) -> str | int | None:
    """The `id` of a request: absent/null, a string or an integer; `error` otherwise (a
    boolean is refused although Python counts it as an int)."""
    rid = msg.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
        raise error("`id` is a string or an integer")
    return rid


def read_frame(raw: str | bytes, types: Container[str], *, text_only: bool = True,
               error: type[BadFrame] = BadFrame) -> dict[str, Any]:
    """The request in `raw`: a JSON object whose `type` is in `types` (see the module's notes);
    `error` (the protocol's BadFrame) otherwise. `text_only`: a bytes `raw` (a binary WebSocket
    frame) is refused; else it is UTF-8 JSON."""
    if text_only and isinstance(raw, (bytes, bytearray, memoryview)):
        raise error("frames are JSON text")
    try:
        msg = read_json(raw)
    except NotJson as exc:
        raise error(str(exc)) from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise error("a frame is a JSON object with a string `type`")
    rid = request_id(msg, error)
    if msg["type"] not in types:
        raise error(f"unknown message type {msg['type'][:MAX_TYPE_ECHO_CHARS]!r}",
                    UNKNOWN_TYPE, rid)
    return msg


def string_field(msg: dict[str, Any], name: str, *, required: bool = True, limit: int,
                 default: str | None = None, nonempty: bool = False,
                 error: type[BadFrame] = BadFrame) -> str | None:
    """A request's string field of at most `limit` characters (`nonempty`: at least one);
    `default` when absent or null and not `required`; `error` otherwise."""
    value = msg.get(name)
    if value is None:
        if required:
            raise error(f"{msg['type']}: `{name}` is required")
        return default
    if not isinstance(value, str) or len(value) > limit or (nonempty and not value):
        span = f"1-{limit}" if nonempty else f"at most {limit}"
        raise error(f"{msg['type']}: `{name}` must be a string of {span} chars")
    return value


def new_incident() -> str:
    """A short id for one failure, for the client and the log (8 hex digits)."""
    return secrets.token_hex(4)


class Incidents:
    """The unexpected failures of one edge, logged through `logger` (see the module's notes)."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL_SECONDS) -> None:
        self.throttled = Throttled(logger, interval, max_keys=MAX_FAILURE_KINDS)
        self._held: OrderedDict[Hashable, list[str]] = OrderedDict()

    def record(self, exc: BaseException, now: float, what: str, *args: object) -> str:
        """Log `exc` (once per kind and interval) as `what % args` and return its incident id."""
        incident = new_incident()
        frames = traceback.extract_tb(exc.__traceback__)
        place = (frames[-1].filename, frames[-1].lineno) if frames else None
        key = (type(exc).__name__, place)
        held = self._held.get(key, [])
        trace = "".join(traceback.format_exception(exc)).rstrip()
        msg = what + " [incident %s]: %s"
        margs: tuple[object, ...] = (*args, incident, trace)
        if held:
            msg += "\n(incidents held back since the last such line: %s)"
            margs = (*margs, ", ".join(held))
        if self.throttled.error(key, now, msg, *margs):
            self._held.pop(key, None)
        else:
            if len(held) < MAX_HELD_IDS:
                held.append(incident)
            self._held[key] = held
            self._held.move_to_end(key)
            while len(self._held) > MAX_FAILURE_KINDS:
                self._held.popitem(last=False)
        return incident
