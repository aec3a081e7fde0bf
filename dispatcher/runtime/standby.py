"""What a standby node answers while it waits for the database's lease (service/leadership.py):
`GET /healthz` says 503 {"status": "standby", "role": ..., "leader": ..., "epoch": ...}, so
that an operator sees who routes; `/metrics` is 503 (no figures of its own yet, never the
leader's). Every other path goes to the leader through the `proxy` resource when one is given
(runtime/proxy.py: the console, the API and the forms work on every node), else is 503 too. `serve` listens with this
site on the HTTP port until the node takes over, then closes it and opens the full site. No
token: it names nodes, never customers or agents.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Site

from .http import GuardedSite, HttpLimits, access_line

RETRY_AFTER_SECONDS = b"5"


class StandbyPage(Resource):
    isLeaf = True

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self._status = status

    def render(self, request: Any) -> bytes:
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"retry-after", RETRY_AFTER_SECONDS)
        if request.path.rstrip(b"/") != b"/healthz":
            return json.dumps({"error": "standby: this node does not route yet"}).encode()
        return json.dumps({"status": "standby", **self._status()}).encode()


# Paths about this node, never passed on: its health, and its metrics (a scraper asking each
# node must not get the leader's figures under a standby's name: 503 until it routes).
LOCAL_PATHS = {b"/healthz", b"/metrics"}


class HealthOrLeader(Resource):
    """`/healthz` and `/metrics` from this node's page, every other path from `proxy` (a leaf:
    it reads the whole `request.uri`, so where the traversal stops does not matter)."""

    def __init__(self, page: StandbyPage, proxy: Resource) -> None:
        super().__init__()
        self._page = page
        self._proxy = proxy

    def getChild(self, path: bytes, request: Any) -> Resource:
        if request.path.rstrip(b"/") in LOCAL_PATHS:
            return self._page
        return self._proxy


def standby_site(status: Callable[[], dict[str, Any]], proxy: Resource | None = None,
                 limits: HttpLimits | None = None) -> Site:
    """Held to the same `HttpLimits` as the full site (runtime/http.py): what it passes on is
    read whole first, within the server's body cap and deadlines."""
    page = StandbyPage(status)
    site = GuardedSite(page if proxy is None else HealthOrLeader(page, proxy), limits,
                       logFormatter=access_line)
    site.displayTracebacks = False
    return site
