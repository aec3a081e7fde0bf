"""The HTTP side of the runtime (twisted.web): the site root the edges hang their pages and APIs
on, and `/healthz` for load balancers and orchestrators (no data about customers or agents, so
it needs no token)."""

from __future__ import annotations

import json

from twisted.web.resource import Resource
from twisted.web.server import Site

from dispatcher.domain.routing import Router


class Health(Resource):
    isLeaf = True

    def __init__(self, router: Router) -> None:
        super().__init__()
        self.router = router

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps({"status": "ok", "queues": len(self.router.queues)}).encode()


def build_site(router: Router) -> tuple[Site, Resource]:
    root = Resource()
    root.putChild(b"healthz", Health(router))
    return Site(root), root
