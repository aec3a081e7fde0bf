"""Structured logs: one JSON object per line when `[log] format = "json"`, and Twisted's own
log routed into the standard `logging` tree either way.

Secrets never reach a log, at any level: `protect()` puts a `Redact` filter on every handler of
the root logger (the CLI calls it once the handlers exist), so whatever a library or our code
writes — the `websockets` handshake lines at DEBUG (request line, `Authorization`,
`Sec-WebSocket-Protocol: ..., bearer.<jwt>`), Twisted's lines, an exception whose message holds
a URL with `?access_token=` — is rewritten before it is formatted: JWT-shaped strings, bearer
values, `access_token=`/`password=`-like query values and the values of `Authorization`,
`Cookie`, `Set-Cookie` and `Sec-WebSocket-Protocol` headers become `[redacted]`, in the message,
its arguments and the exception's text. The sources are fixed too (the access log drops query
strings, handshakes log no headers); this is the net under them.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from twisted.python import log as twisted_log

# Fields of a LogRecord that are not worth repeating in every line.
_SKIP = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


REDACTED = "[redacted]"
# base64url JSON header `{"` ... : every JWT starts with eyJ; signature may be empty (alg none)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer)([ .]+)[A-Za-z0-9._~+/=-]+")
_QUERY = re.compile(r"(?i)\b(access_token|id_token|refresh_token|token|password|secret|jwt)"
                    r"(=|%3D)[^&\s\"'<>;,]+")
_HEADER = re.compile(r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|"
                     r"sec-websocket-protocol)([\"']?\s*[:=,]\s*[\"']?)[^\r\n\"']*")


def redact(text: str) -> str:
    """`text` without anything that looks like a credential (see the module docstring). A
    line without any of the words the patterns start from is returned as it is (cheap)."""
    lower = text.lower()
    if any(word in lower for word in ("authorization", "cookie", "sec-websocket-protocol")):
        text = _HEADER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "bearer" in lower:
        text = _BEARER.sub(lambda m: m.group(1) + " " + REDACTED, text)
    if any(word in lower for word in ("token", "password", "secret", "jwt")):
        text = _QUERY.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return text


class Redact(logging.Filter):
    """Rewrites each record (message with its arguments, exception and stack text) through
    `redact`; never drops a record. Put on handlers: a filter on a logger does not see the
    records its children propagate."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: keep the raw parts, redacted
            message = f"{record.msg!s} {record.args!r}"
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):  # `extra=` fields of JSON lines
            if key not in _SKIP and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def protect(logger: logging.Logger | None = None) -> None:
    """Put one `Redact` on every handler of `logger` (default: the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, Redact) for f in handler.filters):
            handler.addFilter(Redact())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _SKIP})
        if record.exc_text:  # already formatted (and redacted) by `Redact`
            out["exception"] = record.exc_text
        elif record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)


def route_twisted_logs() -> twisted_log.PythonLoggingObserver:
    """Send what Twisted logs to the `twisted` logger of the standard library; returns the
    observer (`.stop()` undoes it)."""
    observer = twisted_log.PythonLoggingObserver(loggerName="twisted")
    observer.start()
    return observer
