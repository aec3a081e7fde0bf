"""A stand-in for Asterisk's ARI (Asterisk REST Interface), enough for the ARI application of
docs/asterisk.md: the REST calls it makes (music on hold, originate, bridges, hang-ups,
device-state subscriptions) answered as Asterisk answers them and recorded, and the events
WebSocket (`/ari/events?app=...&api_key=user:password`) on which the test plays Asterisk's side:
a caller entering the app, the agent's phone answering or not, hang-ups, device states.

Asterisk is not packaged in Debian 12, so the guide runs against this. It runs on the test's
asyncio loop: REST on a small HTTP/1.1 server of its own (one request per connection, no
bodies: ARI takes these parameters in the query), events on a `websockets` server.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

PREFIX = "/ari"


@dataclass
class Leg:
    """An agent leg the application originated (POST /channels): ringing until answered."""

    id: str
    endpoint: str
    args: list[str]


@dataclass
class FakeAri:
    user: str = "switchboard:secret"  # ari.conf's user:password
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    bridges: dict[str, list[str]] = field(default_factory=dict)
    subscriptions: list[str] = field(default_factory=list)
    legs: asyncio.Queue[Leg] = field(default_factory=asyncio.Queue)
    hung_up: list[str] = field(default_factory=list)
    _ringing: dict[str, Leg] = field(default_factory=dict)
    _in_app: set[str] = field(default_factory=set)  # channels in Stasis (callers, answered legs)
    _sockets: set[ServerConnection] = field(default_factory=set)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _servers: list[Any] = field(default_factory=list)
    rest_port: int = 0
    events_port: int = 0

    async def start(self) -> None:
        rest = await asyncio.start_server(self._rest, "127.0.0.1", 0)
        events = await serve(self._events, "127.0.0.1", 0, process_request=self._admit)
        self._servers = [rest, events]
        self.rest_port = rest.sockets[0].getsockname()[1]
        self.events_port = events.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()

    @property
    def urls(self) -> dict[str, str]:
        return {"ARI_URL": f"http://127.0.0.1:{self.rest_port}{PREFIX}",
                "ARI_WS_URL": f"ws://127.0.0.1:{self.events_port}{PREFIX}/events",
                "ARI_USER": self.user}

    # ------------------------------------------------------------------ Asterisk's side

    async def caller(self, channel_id: str, number: str, exten: str) -> None:
        """A call reaches `Stasis(switchboard,${EXTEN})` in the dialplan."""
        self._in_app.add(channel_id)
        await self.emit({"type": "StasisStart", "args": [exten],
                         "channel": {"id": channel_id, "caller": {"number": number}}})

    async def answer(self, leg: Leg) -> None:
        """The agent's phone answers: the originated leg enters the app."""
        self._ringing.pop(leg.id, None)
        self._in_app.add(leg.id)
        await self.emit({"type": "StasisStart", "args": leg.args,
                         "channel": {"id": leg.id, "caller": {"number": "Switchboard"}}})

    async def no_answer(self, leg: Leg, cause: int = 19) -> None:
        """The originate gives up (19: no answer, 17: busy): the leg is destroyed unanswered."""
        self._ringing.pop(leg.id, None)
        await self.emit({"type": "ChannelDestroyed", "cause": cause,
                         "channel": {"id": leg.id}})

    async def hang_up(self, channel_id: str) -> None:
        """A channel in the app hangs up (the caller, or the agent's phone)."""
        self._in_app.discard(channel_id)
        await self.emit({"type": "StasisEnd", "channel": {"id": channel_id}})

    async def device(self, extension: str, state: str) -> None:
        await self.emit({"type": "DeviceStateChanged",
                         "device_state": {"name": f"PJSIP/{extension}", "state": state}})

    async def emit(self, event: dict[str, Any]) -> None:
        for ws in list(self._sockets):
            await ws.send(json.dumps(event))

    def called(self, method: str, path: str) -> list[dict[str, str]]:
        """The parameters of each REST call made to `method` `path` (without /ari)."""
        return [params for m, p, params in self.requests if (m, p) == (method, path)]

    # ------------------------------------------------------------------ the events socket

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        if query.get("api_key") != [self.user] or query.get("app") != ["switchboard"]:
            return connection.respond(401, "unauthorized\n")
        return None

    async def _events(self, ws: ServerConnection) -> None:
        self._sockets.add(ws)
        try:
            await ws.wait_closed()
        finally:
            self._sockets.discard(ws)

    # ------------------------------------------------------------------ REST

    async def _rest(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = Headers()
            for line in filter(None, lines[1:]):
                name, _, value = line.partition(":")
                headers[name.strip()] = value.strip()
            status, body = await self._route(method, target, headers)
            payload = json.dumps(body).encode() if body is not None else b""
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
                         .encode() + payload)
            await writer.drain()
        finally:
            writer.close()

    async def _route(self, method: str, target: str, headers: Headers
                     ) -> tuple[int, Any]:
        expected = "Basic " + base64.b64encode(self.user.encode()).decode()
        if headers.get("Authorization") != expected:
            return 401, {"message": "Authentication required"}
        url = urllib.parse.urlsplit(target)
        if not url.path.startswith(PREFIX + "/"):
            return 404, {"message": "not ARI"}
        path = url.path[len(PREFIX):]
        params = dict(urllib.parse.parse_qsl(url.query))
        self.requests.append((method, path, params))
        parts = path.strip("/").split("/")
        if (method, parts[0]) == ("POST", "channels") and len(parts) == 1:  # originate
            leg = Leg(params.get("channelId") or f"leg-{next(self._ids)}", params["endpoint"],
                      params["appArgs"].split(","))
            self._ringing[leg.id] = leg
            await self.legs.put(leg)
            return 200, {"id": leg.id, "state": "Down", "name": params["endpoint"]}
        if parts[0] == "channels" and len(parts) == 3 and parts[2] == "moh":
            return 204, None
        if (method, parts[0]) == ("DELETE", "channels") and len(parts) == 2:  # hang up
            channel = parts[1]
            self.hung_up.append(channel)
            if self._ringing.pop(channel, None) is not None:
                await self.emit({"type": "ChannelDestroyed", "cause": 16,
                                 "channel": {"id": channel}})
            elif channel in self._in_app:
                await self.hang_up(channel)
            return 204, None
        if (method, path) == ("POST", "/bridges"):
            bridge = f"bridge-{next(self._ids)}"
            self.bridges[bridge] = []
            return 200, {"id": bridge, "bridge_type": params.get("type", "mixing")}
        if method == "POST" and parts[0] == "bridges" and parts[-1] == "addChannel":
            self.bridges[parts[1]].extend(params["channel"].split(","))
            return 204, None
        if (method, path) == ("POST", "/applications/switchboard/subscription"):
            self.subscriptions.append(params["eventSource"])
            return 200, {"name": "switchboard"}
        return 404, {"message": f"{method} {path}: not in this stand-in"}
