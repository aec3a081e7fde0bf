"""A WebSocket tunnel: a node that does not route passes its agents' (or a PBX's) sockets on to
the node that does, so that the console and the CTI answer on every node of a cluster
(docs/operations.md, "Several nodes").

Sits beside websocket.py at the top of the dispatcher (edges build one in their `standby`:
agent_console/plugin.py, channels/phone/plugin.py). The leader stays the one judge of every
socket: the tunnel opens its own connection to the leader's endpoint *inside* the client's
handshake, with the client's path (and query), Origin, Authorization and offered subprotocols,
and answers the client only with what the leader answered. What it promises:

- A client is accepted only once the leader accepted the same handshake (the same subprotocol
  answered); a refusal is the leader's own (401 with its `WWW-Authenticate`, 403, ...), so the
  token, the origin and the account are checked once, by the leader's rules.
- No leader known yet (a takeover in progress) makes the handshake wait up to
  `wait_seconds` for one, then 503 with `Retry-After` (at once when the tunnel stops: this
  node is taking over, and its own server opens on the port); a leader that cannot be
  reached is the same, logged at most once per guard.LOG_INTERVAL_SECONDS.
- Frames pass both ways in order, with back-pressure (a slow side slows the other); the
  client's frames keep the protocol's `max_frame_bytes` (1009 above it), the leader's have none.
- When one side closes, the other is closed with the same code, except that a leader that went
  away without a close frame (killed, a takeover) closes the client with 1012 (service restart:
  the console reconnects and lands on the new leader).
- The token (a subprotocol or the query string) never reaches a log: the upstream connection
  logs through a logger that never says a request line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from twisted.internet.defer import Deferred
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.http11 import Request, Response

from . import websocket
from .aio import Background, to_deferred, to_future
from .guard import Throttled

log = logging.getLogger(__name__)
# websockets logs each request line (with its query: a token) at DEBUG: never on these.
_UPSTREAM_LOG = logging.getLogger(__name__ + ".upstream")
_UPSTREAM_LOG.setLevel(logging.INFO)
_SERVER_LOG = logging.getLogger(__name__ + ".server")
_SERVER_LOG.setLevel(logging.INFO)

CLOSE_SERVICE_RESTART = 1012
UNSENDABLE = {1005, 1006, 1015}  # close codes that say no close frame came: never sent
WAIT_SECONDS = 5.0
RETRY_SECONDS = 0.25
RETRY_AFTER = "5"
MAX_REFUSAL_BODY = 2000


class Tunnel:
    """The WebSocket server of one protocol (`name`: console, cti) on a node that does not
    route. `leader()` gives the leader's endpoint URL (`ws://host:port`) or None; `forget()`
    is called when it failed, so the next call reads it again."""

    def __init__(self, *, name: str, host: str, port: int, max_frame_bytes: int,
                 leader: Callable[[], Deferred[str | None]], forget: Callable[[], None],
                 wait_seconds: float = WAIT_SECONDS) -> None:
        self.name = name
        self._host = host
        self._port = port
        self._max_frame_bytes = max_frame_bytes
        self._leader = leader
        self._forget = forget
        self._wait_seconds = wait_seconds
        self._server: Server | None = None
        self._upstream: dict[int, ClientConnection] = {}
        self._refusals = Throttled(log)
        self._background = Background()
        self.passed_on = 0  # connections passed on to the leader
        self._stopping: asyncio.Event | None = None  # set by stop: waiting handshakes end now

    @property
    def port(self) -> int:
        assert self._server is not None
        return websocket.bound_port(self._server)

    def start(self) -> Deferred[None]:
        return to_deferred(self._start())

    def stop(self) -> Deferred[None]:
        return to_deferred(self._stop())

    async def _start(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await websocket.listen(
            self._connection, name=f"{self.name}-tunnel", host=self._host, port=self._port,
            max_frame_bytes=self._max_frame_bytes, subprotocol="", handshake=self._handshake,
            logger=_SERVER_LOG, select=self._select)
        log.info("%s tunnel on ws://%s:%d: sockets pass on to the router's node", self.name,
                 self._host, self.port)

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if self._stopping is not None:  # this node takes over: a handshake waiting for a
            self._stopping.set()        # leader would hold the port (and the takeover) up
        await websocket.stop(server)
        pending, self._upstream = list(self._upstream.values()), {}
        for upstream in pending:
            await upstream.close(CLOSE_SERVICE_RESTART, "this node takes over")

    def _select(self, connection: ServerConnection, _offered: Any) -> str | None:
        upstream = self._upstream.get(id(connection))
        return upstream.subprotocol if upstream is not None else None

    async def _handshake(self, connection: ServerConnection, request: Request
                         ) -> Response | None:
        deadline = time.monotonic() + self._wait_seconds
        while True:
            target = await to_future(self._leader())
            if target is not None:
                try:
                    upstream = await self._open(target, connection, request)
                except InvalidStatus as refused:  # the leader's own answer
                    return _mirror(connection, refused.response)
                except (OSError, TimeoutError, InvalidHandshake) as exc:  # maybe no leader now
                    self._forget()
                    why = type(exc).__name__
                else:
                    self._upstream[id(connection)] = upstream
                    # A client that never completes its side leaves no upstream behind.
                    asyncio.get_running_loop().call_later(
                        self._wait_seconds * 2, self._orphaned, id(connection))
                    return None
            else:
                why = "no router known"
            stopping = self._stopping is None or self._stopping.is_set()
            if stopping or time.monotonic() + RETRY_SECONDS >= deadline:
                self._refusals.warning("unreachable", time.monotonic(),
                                       "%s tunnel: no router reachable (%s): answered 503",
                                       self.name, why)
                response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE,
                                              "no router reachable from this node: retry\n")
                response.headers["Retry-After"] = RETRY_AFTER
                return response
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), RETRY_SECONDS)

    async def _open(self, target: str, connection: ServerConnection, request: Request
                    ) -> ClientConnection:
        offered = [value.strip() for header in request.headers.get_all("Sec-WebSocket-Protocol")
                   for value in header.split(",") if value.strip()]
        headers = {"X-Forwarded-For": websocket.peer(connection)}
        authorization = request.headers.get("Authorization")  # the CTI's preferred token place
        if authorization is not None:
            headers["Authorization"] = authorization
        origin = request.headers.get("Origin")
        return await connect(
            target.rstrip("/") + request.path, origin=origin,  # type: ignore[arg-type]
            subprotocols=offered or None, additional_headers=headers,  # type: ignore[arg-type]
            user_agent_header=request.headers.get("User-Agent"), compression=None,
            max_size=None, open_timeout=self._wait_seconds, logger=_UPSTREAM_LOG)

    def _orphaned(self, key: int) -> None:
        upstream = self._upstream.pop(key, None)
        if upstream is not None:
            self._background.start(upstream.close(1001, "the client went away"))

    async def _connection(self, client: ServerConnection) -> None:
        upstream = self._upstream.pop(id(client), None)
        if upstream is None:  # cannot happen: the handshake opened it
            await client.close(websocket.CLOSE_POLICY, "no router")
            return
        self.passed_on += 1
        pumps = [asyncio.ensure_future(_pump(client, upstream)),
                 asyncio.ensure_future(_pump(upstream, client))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            if client.close_code is not None:  # the client left: tell the leader the same
                await upstream.close(_sendable(client.close_code), client.close_reason or "")
            else:  # the leader closed (or died): tell the client
                code = upstream.close_code
                await client.close(_sendable(code) if code not in UNSENDABLE and code else
                                   CLOSE_SERVICE_RESTART,
                                   upstream.close_reason or "the router changed: reconnect")


async def _pump(source: Any, sink: Any) -> None:
    try:
        async for frame in source:
            await sink.send(frame)
    except ConnectionClosed:
        return


def _sendable(code: int | None) -> int:
    return 1000 if code is None or code in UNSENDABLE else code


def _mirror(connection: ServerConnection, answer: Any) -> Response:
    """The leader's refusal, as it said it (status, `WWW-Authenticate`, a short body)."""
    try:
        status = HTTPStatus(answer.status_code)
    except ValueError:
        status = HTTPStatus.BAD_GATEWAY
    body = bytes(answer.body or b"")[:MAX_REFUSAL_BODY].decode("utf-8", "replace")
    response = connection.respond(status, body or f"{status.phrase}\n")
    for name in ("WWW-Authenticate", "Retry-After"):
        if name in answer.headers:
            response.headers[name] = answer.headers[name]
    return response
