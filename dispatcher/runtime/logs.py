"""Structured logs: one JSON object per line when `[log] format = "json"`, and Twisted's own
log routed into the standard `logging` tree either way."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from twisted.python import log as twisted_log

# Fields of a LogRecord that are not worth repeating in every line.
_SKIP = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _SKIP})
        if record.exc_info:
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
