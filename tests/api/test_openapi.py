"""The OpenAPI document: made from the route declarations, valid OpenAPI 3.1, the checked-in
copy equal to it (refresh: `python -m api.openapi > docs/api/openapi.json`), and served."""

from __future__ import annotations

import json
from pathlib import Path

from openapi_spec_validator import validate

from api.catalogue import routes
from api.openapi import document, render
from api.routes import ROLES

CHECKED_IN = Path(__file__).resolve().parents[2] / "docs" / "api" / "openapi.json"


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_the_checked_in_copy_is_the_generated_one() -> None:
    assert CHECKED_IN.read_text() == render(), (
        "docs/api/openapi.json is stale: python -m api.openapi > docs/api/openapi.json")


def test_every_route_is_documented_with_its_roles() -> None:
    doc = document()
    for route in routes():
        op = doc["paths"]["/api/v1" + route.path][route.method.lower()]
        assert op["x-roles"] == list(route.roles)
        assert set(route.roles) <= set(ROLES)
        assert op["summary"]
        assert str(route.status) in op["responses"]
        assert "401" in op["responses"] and "403" in op["responses"]


def test_operation_ids_are_unique() -> None:
    ids = [r.operation_id for r in routes()]
    assert len(ids) == len(set(ids))


def test_the_channel_schema_says_there_is_no_other_channel() -> None:
    new = document()["components"]["schemas"]["NewTask"]
    assert new["properties"]["channel"]["enum"] == ["email", "phone"]
    assert "source" in new["properties"]["channel"]["description"]
    assert new["additionalProperties"] is False


def test_served_without_a_token_and_equal(server) -> None:
    got = server.call("GET", "/api/v1/openapi.json")
    assert got.status == 200
    assert got.headers["content-type"] == "application/json"
    assert got.body == json.loads(render())
