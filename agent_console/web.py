"""The console's pages on the runtime's twisted.web site: `/` is the agent console,
`/wallboard` the supervisors' wallboard and `/supervisor` their back office (plain HTML, CSS
and JS from `static/`, no build step); `/console/config.json` tells the page where the
WebSocket server listens. Every page is sent with a strict Content-Security-Policy: scripts and
styles from this server only, sockets to the console's port only, frames from this server only
(an e-mail's HTML body, in a sandbox), the page itself never framed."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.web.resource import Resource
from twisted.web.static import File

from . import messages as m
from .config import ConsoleSettings

STATIC = Path(__file__).with_name("static")


def _harden(request, ws_port: int) -> None:
    host = request.getRequestHostname().decode("ascii", "replace")
    request.setHeader(b"content-security-policy", (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' ws://{host}:{ws_port} wss://{host}:{ws_port}; "
        "frame-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'").encode())
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")
    request.setHeader(b"cache-control", b"no-store")


class ConsolePage(Resource):
    isLeaf = True

    def __init__(self, ws_port: int) -> None:
        super().__init__()
        self.ws_port = ws_port

    def render_GET(self, request) -> bytes:
        _harden(request, self.ws_port)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return (STATIC / "index.html").read_bytes()


class WallboardPage(ConsolePage):
    """`/wallboard`: the supervisors' live state and balancing actions (static/wallboard.*)."""

    def render_GET(self, request) -> bytes:
        _harden(request, self.ws_port)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return (STATIC / "wallboard.html").read_bytes()


class SupervisorPage(ConsolePage):
    """`/supervisor`: the answer library, the review queue, parked spam and customers
    (static/supervisor.*)."""

    def render_GET(self, request) -> bytes:
        _harden(request, self.ws_port)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return (STATIC / "supervisor.html").read_bytes()


class ConsoleConfig(Resource):
    isLeaf = True

    def __init__(self, ws_port: int) -> None:
        super().__init__()
        self.ws_port = ws_port

    def render_GET(self, request) -> bytes:
        _harden(request, self.ws_port)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"ws_port": self.ws_port, "subprotocol": m.SUBPROTOCOL,
                           "token_prefix": m.TOKEN_SUBPROTOCOL_PREFIX,
                           "version": m.PROTOCOL_VERSION}).encode()


class Assets(File):
    """The static files, with the same headers as the page."""

    def __init__(self, path: str, ws_port: int) -> None:
        super().__init__(path)
        self.ws_port = ws_port

    def render_GET(self, request):
        _harden(request, self.ws_port)
        return super().render_GET(request)

    def createSimilarFile(self, path):
        f = Assets(path, self.ws_port)
        f.processors, f.indexNames = self.processors, self.indexNames[:]
        f.childNotFound = self.childNotFound
        return f


def mount(root: Resource, settings: ConsoleSettings, ws_port: int,
          children: dict[bytes, Resource] | None = None) -> None:
    """Hang the console on the site: `/`, `/console/static/...`, `/console/config.json`, and
    `children` under `/console/` (files.py: `mail`, `upload`)."""
    console = Resource()
    for name, child in (children or {}).items():
        console.putChild(name, child)
    console.putChild(b"static", Assets(str(STATIC), ws_port))
    console.putChild(b"config.json", ConsoleConfig(ws_port))
    root.putChild(b"console", console)
    root.putChild(b"", ConsolePage(ws_port))
    root.putChild(b"wallboard", WallboardPage(ws_port))
    root.putChild(b"supervisor", SupervisorPage(ws_port))
