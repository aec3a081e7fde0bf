"""Route declarations: each route says its method, path, parameters, request and response JSON
Schemas, the roles it serves and a summary; the dispatcher (`resource.py`) and the OpenAPI
document (`openapi.py`) are both made from these, so they cannot disagree.

A handler is `async fn(services, call) -> Reply | JSON value`; it translates only: the use case
and its rule of who may live in the service layer. `roles` is the first gate (a role a route
does not serve gets 403 before the service is asked) and what the document tells clients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

ROLES = ("agent", "supervisor", "integration")  # dispatcher.service.tokens.ROLES
PREFIX = "/api/v1"


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" or "query"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Reply:
    body: Any
    status: int = 200


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it: who (`sub`, `role`), the parameters (path and query,
    converted to their schema's types) and the body (validated)."""

    sub: str
    role: str
    params: dict[str, Any]
    body: Any = None

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.sub}"


Handler = Callable[[Any, Call], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below PREFIX, e.g. "/tasks/{id}"
    summary: str
    roles: tuple[str, ...]
    handler: Handler
    response: dict[str, Any]
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    status: int = 200
    tag: str = ""
    description: str = ""
    public: bool = False  # no token needed
    also: tuple[int, ...] = ()  # other success statuses, same body (a PUT that creates: 201)
    errors: tuple[int, ...] = field(default=(400, 401, 403, 404, 409, 500, 503))

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.strip("/").split("/"))

    @property
    def operation_id(self) -> str:
        words = [s.strip("{}") for s in self.segments]
        return self.method.lower() + "_" + "_".join(words)

    def match(self, parts: tuple[str, ...]) -> dict[str, str] | None:
        mine = self.segments
        if len(mine) != len(parts):
            return None
        found: dict[str, str] = {}
        for want, got in zip(mine, parts, strict=True):
            if want.startswith("{"):
                if not got:
                    return None
                found[want[1:-1]] = unquote(got)
            elif want != got:
                return None
        return found


def split(path: str) -> tuple[str, ...] | None:
    """The segments of a request path below PREFIX; None when it is not below it."""
    path = path.split("?", 1)[0]
    if not path.startswith(PREFIX + "/"):
        return None
    return tuple(path[len(PREFIX) + 1:].rstrip("/").split("/"))


def find(routes: list[Route], parts: tuple[str, ...]) -> tuple[list[Route], dict[str, str]]:
    """The routes whose path matches (all methods; literal segments win over parameters),
    and the path parameters."""
    found: list[tuple[int, Route, dict[str, str]]] = []
    for route in routes:
        params = route.match(parts)
        if params is not None:
            found.append((len(params), route, params))
    if not found:
        return [], {}
    fewest = min(n for n, _, _ in found)
    best = [(r, p) for n, r, p in found if n == fewest]
    return [r for r, _ in best], best[0][1]
