"""What a standby node answers while it waits for the database's lease (service/leadership.py):
`GET /healthz` says 503 {"status": "standby", "role": ..., "leader": ..., "epoch": ...}, so
that a load balancer sends it nothing yet and an operator sees who routes; every other path is
503 too. `serve` listens with this site on the HTTP port until the node takes over, then
closes it and opens the full site. No token: it names nodes, never customers or agents.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Site

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


def standby_site(status: Callable[[], dict[str, Any]]) -> Site:
    site = Site(StandbyPage(status))
    site.displayTracebacks = False
    return site
