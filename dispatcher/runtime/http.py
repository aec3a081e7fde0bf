"""The HTTP side of the runtime (twisted.web): the site root the edges hang their pages and APIs
on, and `/healthz` for load balancers and orchestrators (no data about customers or agents, so
it needs no token). The app adds `/metrics` (Prometheus) and `/report` (supervisors) to the root
(see dispatcher/runtime/metrics.py and report.py, docs/operations.md)."""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from dispatcher.domain.routing import Router

# How long /healthz waits for the database before answering 503.
HEALTH_DATABASE_TIMEOUT_SECONDS = 2.0


class Health(Resource):
    """`GET /healthz`: 200 {"status": "ok", ...} when the router runs and (with a `ping`) the
    database answers within HEALTH_DATABASE_TIMEOUT_SECONDS; 503 {"status": "degraded", ...}
    when it does not. `ping()` returns a Deferred firing with the round trip in seconds."""

    isLeaf = True

    def __init__(self, router: Router, ping: Any = None, reactor: Any = None,
                 started: float | None = None) -> None:
        super().__init__()
        self.router = router
        self.ping = ping
        self.reactor = reactor
        self.started = time.time() if started is None else started

    def _state(self) -> dict[str, Any]:
        return {"status": "ok", "queues": len(self.router.queues),
                "agents": len(self.router.agents), "open_tasks": len(self.router.tasks),
                "uptime_seconds": round(time.time() - self.started, 3)}

    def render_GET(self, request) -> Any:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if self.ping is None:
            return json.dumps(self._state()).encode()
        d = self.ping()
        if self.reactor is not None:
            d.addTimeout(HEALTH_DATABASE_TIMEOUT_SECONDS, self.reactor)

        def answer(seconds: Any) -> None:
            state = self._state()
            if isinstance(seconds, Failure):
                state["status"] = "degraded"
                state["database"] = f"unreachable: {seconds.getErrorMessage()[:200]}"
                request.setResponseCode(503)
            else:
                state["database"] = "ok"
                state["database_seconds"] = round(seconds, 6)
            if not getattr(request, "_disconnected", False):
                request.write(json.dumps(state).encode())
                request.finish()

        d.addBoth(answer)
        return NOT_DONE_YET


class _WithoutQuery:
    """A request as the access log sees it: the path without its query string, which may
    carry a signed link (the console's files) or what a visitor searched for."""

    def __init__(self, request: Any) -> None:
        self._request = request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)

    @property
    def uri(self) -> bytes:
        return self._request.uri.split(b"?", 1)[0]


def access_line(timestamp: str, request: Any) -> str:
    return http.combinedLogFormatter(timestamp, _WithoutQuery(request))


def build_site(router: Router) -> tuple[Site, Resource]:
    root = Resource()
    root.putChild(b"healthz", Health(router))
    return Site(root, logFormatter=access_line), root
