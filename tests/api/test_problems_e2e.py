"""Errors are RFC 9457 problem details, over HTTP: malformed JSON says where, unknown fields and
parameters are refused, the wrong media type is 415, a wrong method 405 with Allow, an unknown
path 404, a body over the cap 413 before it is read; nothing is stored by a refused request."""

from __future__ import annotations

import http.client
import json

import pytest

from api.config import ApiSettings
from tests.api.conftest import Server, token

FIELDS = {"type", "title", "status", "detail", "instance"}


def _problem(got, status: int, code: str) -> dict:
    assert got.status == status, got.body
    assert got.headers["content-type"] == "application/problem+json"
    assert set(got.body) >= FIELDS
    assert got.body["status"] == status
    assert got.body["type"] == f"urn:switchboard:problem:{code}"
    assert "Traceback" not in got.raw.decode()
    return got.body


def _count(server: Server) -> int:
    return len(server.call("GET", "/api/v1/tasks?limit=200", role="supervisor").body["items"])


def test_malformed_json_says_where_and_stores_nothing(server: Server) -> None:
    before = _count(server)
    got = server.call("POST", "/api/v1/tasks", raw=b'{"channel": "email",\n "queue": }',
                      role="integration")
    body = _problem(got, 400, "malformed_json")
    assert "line 2 column" in body["detail"]
    assert body["instance"] == "/api/v1/tasks"
    assert _count(server) == before


@pytest.mark.parametrize("raw", [b"", b" ", b"\r\n\t"])
def test_no_body_where_one_is_required_is_400_and_stores_nothing(server: Server,
                                                                 raw: bytes) -> None:
    before = _count(server)  # POST /tasks names its schema by $ref: it was a 500
    got = server.call("POST", "/api/v1/tasks", raw=raw, role="integration")
    assert _problem(got, 400, "invalid_body")["detail"] == "a JSON body is required"
    assert _count(server) == before


@pytest.mark.parametrize("body,where", [
    ({"channel": "email", "queue": "support", "colour": "red"}, "colour"),
    ({"channel": "fax", "queue": "support"}, "/channel"),
    ({"channel": "email", "queue": "support", "priority": 500}, "/priority"),
    ({"channel": "email", "queue": "support", "customer": {"value": "x", "extra": 1}},
     "extra"),
    ({"queue": "support"}, "channel"),
])
def test_a_body_outside_the_schema_is_refused_naming_the_field(server: Server, body,
                                                               where: str) -> None:
    got = server.call("POST", "/api/v1/tasks", body, role="integration")
    assert where in _problem(got, 400, "invalid_body")["detail"]


def test_a_service_refusal_is_its_problem(server: Server) -> None:
    got = server.call("POST", "/api/v1/tasks", {"channel": "email", "queue": "nowhere"},
                      role="integration")
    assert "nowhere" in _problem(got, 404, "unknown_queue")["detail"]
    got = server.call("POST", "/api/v1/tasks", {"channel": "email", "queue": "support",
                                                "customer": {"value": "not an address"}},
                      role="integration")
    _problem(got, 400, "invalid_value")
    got = server.call("GET", "/api/v1/tasks/none-such", role="supervisor")
    _problem(got, 404, "unknown_task")
    got = server.call("POST", "/api/v1/tasks/none-such/cancel", {}, role="supervisor")
    _problem(got, 404, "unknown_task")


def test_unknown_or_bad_query_parameters(server: Server) -> None:
    got = server.call("GET", "/api/v1/tasks?colour=red", role="supervisor")
    assert "colour" in _problem(got, 400, "unknown_parameter")["detail"]
    got = server.call("GET", "/api/v1/tasks?limit=0", role="supervisor")
    assert "limit" in _problem(got, 400, "invalid_parameter")["detail"]
    got = server.call("GET", "/api/v1/tasks?limit=ten", role="supervisor")
    _problem(got, 400, "invalid_parameter")
    got = server.call("GET", "/api/v1/tasks?state=lost", role="supervisor")
    _problem(got, 400, "invalid_parameter")
    got = server.call("GET", "/api/v1/tasks?cursor=bm9wZQ", role="supervisor")
    assert "cursor" in _problem(got, 400, "invalid_value")["detail"]


def test_media_type_method_and_path(server: Server) -> None:
    got = server.call("POST", "/api/v1/tasks", raw=b"channel=email", role="integration",
                      content_type="application/x-www-form-urlencoded")
    _problem(got, 415, "unsupported_media_type")
    got = server.call("DELETE", "/api/v1/tasks", role="supervisor")
    _problem(got, 405, "method_not_allowed")
    assert got.headers["allow"] == "GET, POST"
    _problem(server.call("GET", "/api/v1/nothing/here", role="supervisor"), 404, "not_found")
    _problem(server.call("POST", "/api/v1/openapi.json", {}), 405, "method_not_allowed")


def test_a_body_over_the_cap_is_refused_before_it_is_read(server: Server) -> None:
    cap = ApiSettings().max_body_bytes
    host, port = server.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("POST", "/api/v1/tasks")
        conn.putheader("Authorization", f"Bearer {token('crm', 'integration')}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(cap + 1))
        conn.endheaders()
        answer = conn.getresponse()
        body = json.loads(answer.read())
    finally:
        conn.close()
    assert answer.status == 413
    assert answer.getheader("content-type") == "application/problem+json"
    assert body["status"] == 413 and str(cap) in body["detail"]


def test_a_get_takes_no_body(server: Server) -> None:
    got = server.call("GET", "/api/v1/tasks", raw=b"{}", role="supervisor")
    assert got.status == 413  # the site's cap for bodyless methods is 0
