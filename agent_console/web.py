"""The console's pages on the runtime's twisted.web site: `/` is the agent console,
`/wallboard` the supervisors' wallboard and `/supervisor` their back office (plain HTML, CSS
and JS from `static/`, no build step); `/console/config.json` tells the page where the
WebSocket server listens. Every page is sent with the product's page headers
(`dispatcher.service.pages.harden`) and a strict Content-Security-Policy: scripts and styles
from this server only, sockets to the console's port only (on whatever host name the browser
used: `ws://*:PORT`, since the policy is never built from the request's `Host`), frames from
this server only (an e-mail's HTML body, in a sandbox), the page itself never framed."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.web.resource import Resource
from twisted.web.static import File

from dispatcher.service import pages

from . import messages as m
from .config import ConsoleSettings

STATIC = Path(__file__).with_name("static")


def policy(ws_port: int) -> str:
    """The pages' Content-Security-Policy: constants and the configured port only."""
    port = int(ws_port)
    return pages.policy(
        "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
        f"connect-src 'self' {pages.source(f'ws://*:{port}')} {pages.source(f'wss://*:{port}')}",
        "frame-src 'self'", "form-action 'none'")


def _harden(request, ws_port: int) -> None:
    pages.harden(request, policy(ws_port))


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

    def getChild(self, path, request):
        """A segment with a NUL (`%00`) or that is not UTF-8 names no file: 404, without the
        ValueError (500) or the logged error twisted's File gives for them."""
        if isinstance(path, bytes):
            try:
                path = path.decode("utf-8")
            except UnicodeDecodeError:
                return self.childNotFound
        if "\x00" in path:
            return self.childNotFound
        return super().getChild(path, request)

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
