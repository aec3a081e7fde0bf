"""`GET /healthz` for load balancers and orchestrators: whether the dispatcher runs (the size of
its routing state) and its database answers. No data about customers or agents, so it needs no
token. Mounted by the admin edge (plugin.py) on the runtime's site; reads through
`dispatcher.service.health.Readiness`, never the router or the store.
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from dispatcher.service.health import Readiness

# How long /healthz waits for the database before answering 503.
HEALTH_DATABASE_TIMEOUT_SECONDS = 2.0


class Health(Resource):
    """`GET /healthz`: 200 {"status": "ok", ...} when the router runs and (when `readiness`
    probes it) the database answers within HEALTH_DATABASE_TIMEOUT_SECONDS; 503
    {"status": "degraded", ...} when it does not."""

    isLeaf = True
    max_body_bytes = 0  # a probe sends no body

    def __init__(self, readiness: Readiness | None, reactor: Any = None,
                 started: float | None = None) -> None:
        super().__init__()
        self.readiness = readiness
        self.reactor = reactor
        self.started = time.time() if started is None else started

    def _state(self) -> dict[str, Any]:
        figures = self.readiness.figures() if self.readiness is not None else {}
        return {"status": "ok", **figures,
                "uptime_seconds": round(time.time() - self.started, 3)}

    def render_GET(self, request) -> Any:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if self.readiness is None or not self.readiness.probes_database:
            return json.dumps(self._state()).encode()
        d = self.readiness.ping()
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
