"""Schemathesis against the running server's `/api/v1/openapi.json`, with a supervisor token
(every route open to it): generated calls of every operation get no 5xx (503 is allowed: a
service this server does not wire), and every answer conforms to the document (status code,
content type, schema), for valid calls and for invalid ones (negative mode: each must be
refused as documented, never crash). On a server of its own, since it creates and removes at random; bounded
by `MAX_EXAMPLES` per operation (about a minute in all)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import Server, started, token

MAX_EXAMPLES = 15


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> Iterator[Server]:
    with started(tmp_path_factory.mktemp("api-fuzz")) as running:
        yield running


def no_server_error(ctx, response, case) -> None:
    """5xx only as 503 (a service this process lacks), always as a problem document."""
    if response.status_code >= 500 and response.status_code != 503:
        raise AssertionError(f"{response.status_code}: {response.text[:500]}")


CHECKS = [no_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def test_the_api_keeps_its_document(fuzzed: Server) -> None:
    """Every operation of the served document, `MAX_EXAMPLES` generated calls each (the
    pytest plugin's lazy loader does not run on this pytest, so Hypothesis drives the
    strategies schemathesis makes)."""
    schema = schemathesis.openapi.from_url(fuzzed.base + "/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {token('boss', 'supervisor', ttl=3600)}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    cases = [(op, mode) for op in operations
             for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    for operation, mode in cases:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            case.call_and_validate(base_url=fuzzed.base, headers=headers, checks=CHECKS,
                                   timeout=30)

        run()
