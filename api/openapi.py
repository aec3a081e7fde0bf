"""The OpenAPI 3.1 document of the API, made from the route declarations (routes.py): served at
`GET /api/v1/openapi.json` and checked in at docs/api/openapi.json (a test keeps the two equal).

Refresh the checked-in copy with `python -m api.openapi > docs/api/openapi.json`."""

from __future__ import annotations

import json
import sys
from http import HTTPStatus
from typing import Any

from .catalogue import routes as all_routes
from .routes import PREFIX, Route
from .schemas import COMPONENTS, ref

TITLE = "Switchboard REST API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Tasks, customers, answers, reports and configuration of a Switchboard dispatcher. "
    "Authenticate with `Authorization: Bearer <token>` (from `POST /login` or `switchboard "
    "token`; roles agent, supervisor, integration). Errors are RFC 9457 problem details. "
    "See docs/api/README.md.")


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id, "summary": route.summary,
        "tags": [route.tag] if route.tag else [],
        "x-roles": list(route.roles),
    }
    roles = ", ".join(route.roles)
    op["description"] = (route.description + "\n\n" if route.description else "") + \
        f"Roles: {roles}."
    if route.params:
        op["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
             "schema": p.schema, **({"description": p.description} if p.description else {})}
            for p in route.params]
    if route.body is not None:
        op["requestBody"] = {"required": "required" in route.body or "$ref" in route.body,
                             "content": {"application/json": {"schema": route.body}}}
    responses: dict[str, Any] = {str(status): {
        "description": HTTPStatus(status).phrase,
        "content": {"application/json": {"schema": route.response}}}
        for status in (route.status, *route.also)}
    errors = set(route.errors) | {401, 403, 405}
    if not route.public:
        errors.add(429)  # every token holder's request budget
    if route.body is not None:
        errors |= {413, 415}
    for status in sorted(errors):
        responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
    op["responses"] = responses
    if route.public:
        op["security"] = []
    return op


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in all_routes():
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = _operation(route)
    paths[PREFIX + "/openapi.json"] = {"get": {
        "operationId": "get_openapi", "summary": "This document", "security": [],
        "tags": ["meta"],
        "responses": {"200": {"description": "OK", "content": {
            "application/json": {"schema": {"type": "object"}}}}}}}
    problem = {"content": {"application/problem+json": {"schema": ref("Problem")}}}
    # Bad input is always 400 (never 422); 429 carries Retry-After.
    codes = (400, 401, 403, 404, 405, 409, 413, 415, 429, 500, 503)
    responses: dict[str, Any] = {str(c): {"description": HTTPStatus(c).phrase, **problem}
                                 for c in codes}
    responses["429"]["headers"] = {"Retry-After": {
        "description": "whole seconds until this token's holder may ask again",
        "schema": {"type": "integer", "minimum": 1}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION,
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "responses": responses,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
