"""Structured logs: one JSON object per line, with the call's extra fields and the traceback;
Twisted's own log routed into the same `logging` tree."""

from __future__ import annotations

import io
import json
import logging

from twisted.logger import Logger as TwistedLogger
from twisted.python import log as twisted_log

from dispatcher.runtime.logs import JsonFormatter, route_twisted_logs


def capture(name: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, out, handler


def test_one_json_object_per_line_with_extra_fields_and_exceptions():
    logger, out, handler = capture("sb.test.json")
    try:
        logger.info("report built", extra={"events": 12, "took": 0.5, "odd": object()})
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # a newline in a message or a traceback never splits a record
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "info" and first["logger"] == "sb.test.json"
    assert first["message"] == "report built"
    assert first["events"] == 12 and first["took"] == 0.5 and "object" in first["odd"]
    assert first["time"].endswith("+00:00")
    assert second["level"] == "error" and "ValueError: bad" in second["exception"]
    assert "args" not in first and "msg" not in first


def test_twisted_logs_reach_the_logging_tree():
    logger, out, handler = capture("twisted")
    observer = route_twisted_logs()  # what serve does
    try:
        TwistedLogger(namespace="sb.test").info("hello {who}", who="web")
        twisted_log.msg("legacy message")
    finally:
        observer.stop()
        logger.removeHandler(handler)
    messages = [json.loads(line)["message"] for line in out.getvalue().splitlines()]
    assert "hello web" in messages and "legacy message" in messages
