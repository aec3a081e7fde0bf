"""The one WebSocket server set-up of the process: the agent console (agent_console/server.py)
and the phone edge's CTI (channels/phone/cti.py) both listen through `listen` and refuse a
handshake through the same few answers, so the two cannot drift apart again.

Sits beside net.py and guard.py at the top of the dispatcher (edges may import it; it imports
neither an edge nor storage). Each protocol keeps its own names: its subprotocol, where its
token may come from, its messages, error codes and close codes; frames are read by
dispatcher.service.wire.read_frame (also used for `POST /cti/events` bodies, which are no
WebSocket). It promises, for every server started with `listen`:
- `compression=None` (small JSON; no compression side channels), `max_size` = the protocol's
  largest frame (a larger one closes the socket with 1009), the process's connection gate
  (net.websocket_connection: per-source cap, global budget) and its deadline for a complete
  handshake (net.limits().header_timeout), `Server: switchboard-<name>`.
- Each connection's `held_writes` (held_writes.HeldWrites, its transport) lets a writer with
  several frames ready send them in one write.
- The subprotocol answered is the protocol's own name when the client offered it, never a
  `bearer.<jwt>` value.
- Handshake refusals are plain HTTP answers before any WebSocket exists: 401 with
  `WWW-Authenticate: Bearer` (`unauthorized`), 403 (`forbidden`, `foreign_origin`); the token
  never reaches a log, a foreign Origin is logged at most once per guard.LOG_INTERVAL_SECONDS
  per client.
- `Admissions` hands the claims checked at the handshake to the connection they belong to; a
  connection without them (cannot happen) is closed with 1008.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import net
from .guard import Throttled
from .held_writes import HeldWrites

# Where a browser puts its token (it cannot set headers on a WebSocket): a second subprotocol
# `bearer.<jwt>` next to the protocol's; any client may also use `?access_token=<jwt>`.
TOKEN_SUBPROTOCOL_PREFIX = "bearer."
TOKEN_QUERY_PARAMETER = "access_token"
BEARER = "bearer "  # `Authorization: Bearer <jwt>`, compared in lower case
# Close codes every protocol shares (RFC 6455 7.4.1, and the application range for revocation).
CLOSE_SHUTDOWN = 1001
CLOSE_POLICY = 1008  # unauthenticated; a client that does not read its frames
CLOSE_TOO_BIG = 1009
CLOSE_TOKEN_REVOKED = 4007
TOKEN_REVOKED_REASON = "token revoked"
MAX_ORIGIN_LOGGED = 200

Claims = TypeVar("Claims")


async def listen(connection: Callable[[ServerConnection], Awaitable[None]], *, name: str,
                 host: str, port: int, max_frame_bytes: int, subprotocol: str,
                 handshake: Callable[[ServerConnection, Request], Any],
                 logger: logging.Logger,
                 select: Callable[[ServerConnection, Any], str | None] | None = None
                 ) -> Server:
    """A WebSocket server for one protocol (`name`: console, cti), set up as the module says.
    `handshake` is websockets' `process_request` (a Response refuses; None goes on); `select`
    chooses the subprotocol answered (default: `subprotocol` when offered)."""

    def own(_connection: ServerConnection, offered: Any) -> str | None:
        return subprotocol if subprotocol in offered else None

    return await serve(
        connection, host, port, process_request=handshake, select_subprotocol=select or own,
        compression=None, max_size=max_frame_bytes, server_header=f"switchboard-{name}",
        logger=logger, create_connection=_connection(name),
        open_timeout=net.limits().header_timeout, backlog=net.ACCEPT_BACKLOG,
    )


def _connection(name: str) -> type[ServerConnection]:
    """The connection class of a server: the gate's (net.websocket_connection), whose transport
    can hold a writer's frames and send them as one write (`held_writes`: held_writes.py)."""
    counted: type[ServerConnection] = net.websocket_connection(name)

    class Connection(counted):  # type: ignore[misc,valid-type]
        held_writes: HeldWrites | None = None

        def connection_made(self, transport: Any) -> None:
            self.held_writes = HeldWrites(transport)
            super().connection_made(self.held_writes)

    return Connection


def bound_port(server: Server) -> int:
    """The port a server listens on (the one the OS chose for port 0)."""
    return server.sockets[0].getsockname()[1]


async def stop(server: Server | None) -> None:
    """Close a server and every connection it holds (1001 to each)."""
    if server is not None:
        server.close(close_connections=True)
        await server.wait_closed()


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <jwt>` header value (the scheme in any case)."""
    if authorization and authorization[:len(BEARER)].lower() == BEARER:
        return authorization[len(BEARER):].strip()
    return None


def token_from(request: Request, *, authorization: bool = False) -> str | None:
    """The bearer token of a handshake: `Authorization: Bearer` (when the protocol takes it),
    the `bearer.<jwt>` subprotocol, else `?access_token=`."""
    if authorization:
        token = bearer(request.headers.get("Authorization"))
        if token:
            return token
    for header in request.headers.get_all("Sec-WebSocket-Protocol"):
        for value in header.split(","):
            value = value.strip()
            if value.startswith(TOKEN_SUBPROTOCOL_PREFIX):
                return value[len(TOKEN_SUBPROTOCOL_PREFIX):]
    values = parse_qs(urlsplit(request.path).query).get(TOKEN_QUERY_PARAMETER)
    return values[0] if values else None


def peer(connection: Any) -> str:
    """A client's address (host only: a client may use many ports), through a node of the
    cluster that passed it on (net.forwarded_client)."""
    address = getattr(connection, "remote_address", None)
    request = getattr(connection, "request", None)
    forwarded = request.headers.get("X-Forwarded-For") if request is not None else None
    return net.forwarded_client(str(address[0]) if address else "unknown", forwarded)


def unauthorized(connection: ServerConnection, why: str) -> Response:
    """401 with `WWW-Authenticate: Bearer` (no, or a bad, token)."""
    response = connection.respond(HTTPStatus.UNAUTHORIZED, f"unauthorized: {why}\n")
    response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def forbidden(connection: ServerConnection, text: str) -> Response:
    """403 with `text` (one line)."""
    return connection.respond(HTTPStatus.FORBIDDEN, text if text.endswith("\n") else text + "\n")


def foreign_origin(connection: ServerConnection, origin: str, refusals: Throttled,
                   label: str) -> Response:
    """403 for a browser page not allowed to connect, logged (throttled per client)."""
    refusals.warning((peer(connection), "origin"), time.monotonic(),
                     "%s: refused a handshake from origin %r (from %s)", label,
                     origin[:MAX_ORIGIN_LOGGED], peer(connection))
    return forbidden(connection, "origin not allowed")


class Admissions(Generic[Claims]):
    """The claims each handshake admitted, until its connection takes them."""

    def __init__(self) -> None:
        self._claims: dict[int, Claims] = {}

    def admit(self, connection: ServerConnection, claims: Claims) -> None:
        self._claims[id(connection)] = claims

    async def take(self, connection: ServerConnection) -> Claims | None:
        """The connection's claims; None (and the socket closed with 1008) without them."""
        claims = self._claims.pop(id(connection), None)
        if claims is None:  # cannot happen: the handshake refused it
            await connection.close(CLOSE_POLICY, "unauthenticated")
        return claims


async def frames(connection: Any) -> AsyncIterator[str | bytes]:
    """The frames a client sends, until it closes (a closed connection simply ends them)."""
    try:
        async for raw in connection:
            yield raw
    except ConnectionClosed:
        return
