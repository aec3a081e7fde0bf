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


JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhMSIsInJvbGUiOiJhZ2VudCJ9."
       "c2lnbmF0dXJlLXBhcnQtb2YtdGhlLXRva2Vu")


def test_redact_removes_tokens_headers_and_query_secrets():
    from dispatcher.runtime.logs import redact

    lines = {
        f"< GET /?access_token={JWT} HTTP/1.1": "< GET /?access_token=[redacted] HTTP/1.1",
        f"< Sec-WebSocket-Protocol: switchboard.v1, bearer.{JWT}":
            "< Sec-WebSocket-Protocol: [redacted]",
        "< Authorization: Bearer opaque-value": "< Authorization: [redacted]",
        "< Cookie: session=abc": "< Cookie: [redacted]",
        "{'authorization': 'Basic dXNlcjpwYXNz'}": "{'authorization': '[redacted]'}",
        f"token refused for {JWT} (bad signature)": "token refused for [redacted] (bad signature)",
        "GET /report?from=1&password=hunter2&to=2": "GET /report?from=1&password=[redacted]&to=2",
        "console: refused a token: token expired": "console: refused a token: token expired",
    }
    for line, expected in lines.items():
        assert redact(line) == expected


def test_the_filter_cleans_messages_arguments_exceptions_and_extra_fields():
    from dispatcher.runtime.logs import protect

    logger, out, handler = capture("sb.test.redact")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        protect(logger)
        logger.debug("< %s: %s", "Sec-WebSocket-Protocol", f"bearer.{JWT}")
        try:
            raise ValueError(f"cannot parse {JWT}")
        except ValueError:
            logger.exception("request failed", extra={"url": f"/x?access_token={JWT}"})
    finally:
        root.removeHandler(handler)
        logger.removeHandler(handler)
    text = out.getvalue()
    assert JWT not in text and "c2lnbmF0dXJl" not in text
    assert text.count("[redacted]") >= 3
    lines = [json.loads(line) for line in text.splitlines()]
    assert "ValueError" in lines[1]["exception"]


def test_the_access_log_drops_the_query_of_the_path_and_of_the_referer():
    from twisted.web.test.requesthelper import DummyRequest

    from dispatcher.runtime.http import access_line

    request = DummyRequest([b"report"])
    request.uri = f"/report?access_token={JWT}".encode()
    request.method, request.clientproto, request.code, request.sentLength = (
        b"GET", b"HTTP/1.1", 200, 0)
    request.requestHeaders.setRawHeaders(b"referer",
                                         [b"http://h/console/mail?m=1&k=0123abcd"])
    line = access_line("now", request)
    assert '"GET /report HTTP/1.1"' in line and '"http://h/console/mail"' in line
    assert JWT not in line and "0123abcd" not in line
