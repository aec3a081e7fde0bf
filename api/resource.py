"""`/api/v1/…` on the runtime's HTTP site (twisted.web): finds the declared route, checks the
token, the role, the parameters and the body against the route's declaration, calls the
handler, and answers JSON (or an RFC 9457 problem).

What it promises:
- `GET /api/v1/openapi.json` needs no token; every other route needs `Authorization: Bearer`
  with a token the console would accept (same keys and checks, revocation included) whose
  holder the accounts' rule admits (`Accounts.admit`: a disabled account is refused): else 401;
- a role the route does not serve: 403 (the service checks its own rule again);
- an unknown path 404, a known path with another method 405 (with `Allow`); a body that is
  not `application/json` 415; malformed JSON 400 saying where; a body or a query parameter the
  route does not declare, or one that breaks its schema, 400 saying which; a body over
  `max_body_bytes` is refused by the site before it is read (413, as a problem);
- each token holder (role and subject) has a request budget (`Budget`, a token bucket): past
  it 429 with `Retry-After` (whole seconds until the next request is allowed), logged at most
  once a minute per holder;
- a service's refusal becomes its problem (problems.py); anything unexpected a 500 whose
  detail is an incident id, logged once with its trace; never a traceback to the client;
- the handler's Deferred runs on the reactor; the answer is written only after the service's
  Deferred fired (so a 2xx means committed). Tokens never reach a log.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from twisted.internet.defer import ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from dispatcher import net
from dispatcher.domain.errors import DomainError
from dispatcher.guard import Budget, Throttled
from dispatcher.service.accounts import AccountDisabled, UnknownAccount
from dispatcher.service.tokens import Claims, TokenRefused, TokenRevoked, Verifier
from dispatcher.service.wire import Incidents, NotJson, read_json

from . import problems
from .problems import Problem
from .routes import PREFIX, Call, Param, Reply, Route, find, split
from .schemas import COMPONENTS
from .services import Services

log = logging.getLogger(__name__)
refusals = Throttled(log)

JSON = b"application/json"
OPENAPI = ("openapi.json",)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator whose `#/components/schemas/…` references resolve to ours."""
    return Draft202012Validator({**schema, "components": {"schemas": COMPONENTS}})


def _where(error: Any) -> str:
    path = "/".join(str(p) for p in error.absolute_path)
    return f"/{path}" if path else "the body"


def _bearer(header: bytes | None) -> str:
    scheme, _, token = (header or b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRefused("a bearer token is required")
    return token.strip()


def _convert(param: Param, raw: str) -> Any:
    kind = param.schema.get("type")
    if kind == "integer":
        if not raw.lstrip("-").isdigit() or len(raw) > 18:
            raise Problem(400, "invalid_parameter", f"{param.name}: an integer is needed")
        return int(raw)
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise Problem(400, "invalid_parameter", f"{param.name}: true or false")
        return raw == "true"
    return raw


class ApiResource(Resource):
    isLeaf = True

    def __init__(self, routes: list[Route], services: Services, verifier: Verifier | None,
                 accounts: Any, document: bytes, max_body_bytes: int,
                 clock: Callable[[], float] = time.time, budget: Budget | None = None,
                 ) -> None:
        super().__init__()
        self.routes = routes
        self.services = services
        self.verifier = verifier
        self.accounts = accounts
        self.document = document
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.budget = budget  # requests per token holder; None: no limit
        self.incidents = Incidents(log)
        self._bodies = {id(r): _validator(r.body) for r in routes if r.body is not None}
        self._params = {(id(r), p.name): _validator(p.schema) for r in routes for p in r.params}

    # ------------------------------------------------------------------ the site's hooks

    def too_large(self, limit: int, request: Any) -> tuple[bytes, bytes]:
        """The site refused the body before reading it (dispatcher/runtime/http.py)."""
        problem = Problem(413, "too_large", f"the request body has at most {limit} bytes")
        path = getattr(request.channel, "_path", b"") or b""  # only the head is known yet
        return problems.CONTENT_TYPE, problem.body(path.split(b"?", 1)[0].decode("latin-1")[:500])

    def render(self, request: Any) -> Any:
        d = ensureDeferred(self._serve(request))
        d.addErrback(self._unexpected, request)
        return NOT_DONE_YET

    # ------------------------------------------------------------------ one request

    async def _serve(self, request: Any) -> None:
        path = request.path.decode("latin-1")
        try:
            status, body = await self._answer(request, path)
        except Problem as problem:
            self._problem(request, path, problem)
            return
        except DomainError as exc:
            self._problem(request, path, problems.from_error(exc))
            return
        self._write(request, status, JSON, json.dumps(body, allow_nan=False).encode())

    async def _answer(self, request: Any, path: str) -> tuple[int, Any]:
        method = request.method.decode("latin-1").upper()
        parts = split(path)
        if parts == OPENAPI:
            if method not in ("GET", "HEAD"):
                request.setHeader(b"allow", b"GET")
                raise Problem(405, "method_not_allowed", f"{method} is not served here",
                              allow="GET")
            return 200, json.loads(self.document)
        routes, raw_params = find(self.routes, parts) if parts is not None else ([], {})
        if not routes:
            raise Problem(404, "not_found", "no such resource")
        route = next((r for r in routes if r.method == method
                      or (method == "HEAD" and r.method == "GET")), None)
        if route is None:
            allowed = ", ".join(sorted({r.method for r in routes}))
            request.setHeader(b"allow", allowed.encode())
            raise Problem(405, "method_not_allowed", f"{method} is not served here",
                          allow=allowed)
        claims = await self._authenticate(request)
        self._spend(request, claims)
        if claims.role not in route.roles:
            raise Problem(403, "forbidden", f"a token of role {claims.role} may not use "
                                            f"{route.method} {PREFIX}{route.path}")
        call = Call(claims.sub, claims.role, self._parameters(route, raw_params, request),
                    self._body(route, request, method))
        result = await route.handler(self.services, call)
        if isinstance(result, Reply):
            return result.status, result.body
        return route.status, result

    async def _authenticate(self, request: Any) -> Claims:
        if self.verifier is None:
            raise Problem(503, "not_available", "no token keys: the API is not available")
        try:
            claims = self.verifier.verify(_bearer(request.getHeader(b"authorization")))
        except TokenRevoked as exc:
            claims = exc.claims
            await self._admit(request, claims)  # a disabled account is said as such
            self._unauthorized(request, "token revoked")
        except TokenRefused as exc:
            self._unauthorized(request, str(exc))
        await self._admit(request, claims)
        return claims

    async def _admit(self, request: Any, claims: Claims) -> None:
        if self.accounts is None:
            if claims.role == "supervisor":
                self._unauthorized(request, "no accounts here: supervisor tokens are refused")
            return
        try:
            await self.accounts.admit(claims.sub, claims.role)
        except AccountDisabled:
            self._unauthorized(request, "account disabled")
        except UnknownAccount:
            self._unauthorized(request, f"no {claims.role} account {claims.sub}")

    def _unauthorized(self, request: Any, why: str) -> None:
        host = net.client_host(request)
        refusals.warning((host, "token"), time.monotonic(),
                         "api: refused a token from %s: %s", host, why)
        request.setHeader(b"www-authenticate", b'Bearer error="invalid_token"')
        raise Problem(401, "unauthorized", why)

    def _spend(self, request: Any, claims: Claims) -> None:
        """One request of the holder's budget, or 429 with the seconds to wait."""
        if self.budget is None:
            return
        holder, now = (claims.role, claims.sub), self.clock()
        if self.budget.take(holder, now):
            return
        wait = max(1, math.ceil((1.0 - self.budget.left(holder, now)) / self.budget.rate))
        refusals.warning((holder, "rate"), time.monotonic(),
                         "api: %s %s is over its request budget", claims.role, claims.sub[:80])
        request.setHeader(b"retry-after", str(wait).encode())
        raise Problem(429, "too_many_requests",
                      f"too many requests for this token's holder: retry in {wait} s",
                      retry_after=wait)

    def _parameters(self, route: Route, raw_path: dict[str, str], request: Any
                    ) -> dict[str, Any]:
        query = request.uri.split(b"?", 1)[1].decode("latin-1") if b"?" in request.uri else ""
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query),
                              errors="strict")
        except (ValueError, UnicodeDecodeError):
            raise Problem(400, "invalid_parameter", "the query string cannot be read") \
                from None
        declared = {p.name: p for p in route.params}
        values: dict[str, Any] = {}
        for name, raw in pairs:
            param = declared.get(name)
            if param is None or param.where != "query":
                raise Problem(400, "unknown_parameter", f"unknown query parameter {name[:80]!r}")
            if name in values:
                raise Problem(400, "invalid_parameter", f"{name}: given more than once")
            values[name] = _convert(param, raw)
        for name, raw in raw_path.items():
            values[name] = _convert(declared[name], raw)
        for param in route.params:
            if param.name not in values:
                if param.required:
                    raise Problem(400, "missing_parameter", f"{param.name} is required")
                continue
            error = best_match(self._params[(id(route), param.name)].iter_errors(
                values[param.name]))
            if error is not None:
                raise Problem(400, "invalid_parameter", f"{param.name}: {error.message[:300]}")
        return values

    def _body(self, route: Route, request: Any, method: str) -> Any:
        raw = request.content.read(self.max_body_bytes + 1) if request.content else b""
        if route.body is None or method not in BODY_METHODS:
            if raw.strip():
                raise Problem(400, "unexpected_body", "this route takes no request body")
            return None
        if not raw.strip():  # no body: as `{}`, which the schema (even behind a $ref) judges
            body: Any = {}
            if best_match(self._bodies[id(route)].iter_errors(body)) is not None:
                raise Problem(400, "invalid_body", "a JSON body is required")
            return body
        kind = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if kind != JSON:
            raise Problem(415, "unsupported_media_type", "the body must be application/json")
        try:
            body = read_json(raw)
        except NotJson as exc:
            raise Problem(400, "malformed_json", _malformed(raw, str(exc))) from None
        error = best_match(self._bodies[id(route)].iter_errors(body))
        if error is not None:
            raise Problem(400, "invalid_body", f"{_where(error)}: {error.message[:300]}")
        return body

    # ------------------------------------------------------------------ answers

    def _problem(self, request: Any, path: str, problem: Problem) -> None:
        self._write(request, problem.status, problems.CONTENT_TYPE, problem.body(path[:500]))

    def _write(self, request: Any, status: int, content_type: bytes, body: bytes) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", content_type)
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.write(body)
        request.finish()

    def _unexpected(self, failure: Any, request: Any) -> None:
        path = request.path.decode("latin-1")
        incident = self.incidents.record(failure.value, self.clock(), "api: %s %s failed",
                                         request.method.decode("latin-1")[:10], path[:200])
        self._problem(request, path, Problem(500, "internal_error",
                                             f"unexpected failure (incident {incident})"))


def _malformed(raw: bytes, why: str) -> str:
    """Where a body stops being JSON (line and column), else the reader's reason."""
    try:
        json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:
        return f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    except (ValueError, RecursionError):
        pass
    return f"malformed JSON: {why}"
