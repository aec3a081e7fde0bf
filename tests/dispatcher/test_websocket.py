"""dispatcher/websocket.py: the WebSocket set-up the console and the CTI share, against a real
`websockets` server on 127.0.0.1 and real clients (each test runs its own asyncio loop)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request

from agent_console import messages as console_messages
from channels.phone import messages as cti_messages
from dispatcher import websocket
from dispatcher.guard import Throttled

log = logging.getLogger(__name__)
PROTOCOL = "test.v1"
TIMEOUT = 5.0


def request(path: str = "/", **headers: str | list[str]) -> Request:
    h = Headers()
    for name, value in headers.items():
        for v in (value if isinstance(value, list) else [value]):
            h[name.replace("_", "-")] = v
    return Request(path, h)


def test_the_token_comes_from_the_subprotocol_the_query_or_if_allowed_the_header() -> None:
    assert websocket.token_from(request(Sec_WebSocket_Protocol="test.v1, bearer.abc")) == "abc"
    assert websocket.token_from(request(Sec_WebSocket_Protocol=["test.v1", "bearer.x"])) == "x"
    assert websocket.token_from(request("/?access_token=q1")) == "q1"
    assert websocket.token_from(request(Authorization="Bearer h1")) is None
    assert websocket.token_from(request(Authorization="bEaReR h1"), authorization=True) == "h1"
    assert websocket.token_from(request(Authorization="Basic h1"), authorization=True) is None
    assert websocket.token_from(request()) is None


def test_a_bearer_header_in_any_case() -> None:
    assert websocket.bearer("Bearer  t.o.k ") == "t.o.k"
    assert websocket.bearer("BEARER x") == "x"
    assert websocket.bearer("Basic x") is None and websocket.bearer(None) is None
    assert websocket.bearer("Bearer") is None


def test_both_protocols_name_the_token_places_alike() -> None:
    for m in (console_messages, cti_messages):
        assert m.TOKEN_SUBPROTOCOL_PREFIX == websocket.TOKEN_SUBPROTOCOL_PREFIX
        assert m.TOKEN_QUERY_PARAMETER == websocket.TOKEN_QUERY_PARAMETER
        assert m.CLOSE_SHUTDOWN == websocket.CLOSE_SHUTDOWN
    assert cti_messages.BEARER == websocket.BEARER


class Echo:
    """A protocol of one rule: the token `good` gets in and each frame comes back."""

    def __init__(self) -> None:
        self.admissions: websocket.Admissions[str] = websocket.Admissions()
        self.refusals = Throttled(log)
        self.closed: list[str] = []
        self.admitting = True  # False: a handshake that lets a connection in without claims

    def handshake(self, connection: Any, req: Request) -> Any:
        origin = req.headers.get("Origin")
        if origin is not None and origin != "http://ok.example":
            return websocket.foreign_origin(connection, origin, self.refusals, "echo")
        token = websocket.token_from(req)
        if not self.admitting:
            return None
        if token != "good":
            return websocket.unauthorized(connection, "a bearer token is required")
        self.admissions.admit(connection, token)
        return None

    async def connection(self, ws: Any) -> None:
        if await self.admissions.take(ws) is None:
            return
        async for raw in websocket.frames(ws):
            await ws.send(raw)
        self.closed.append("done")


def served(test: Any) -> Any:
    def wrapper() -> None:
        async def main() -> None:
            echo = Echo()
            server = await websocket.listen(
                echo.connection, name="echo", host="127.0.0.1", port=0, max_frame_bytes=256,
                subprotocol=PROTOCOL, handshake=echo.handshake, logger=log)
            try:
                async with asyncio.timeout(TIMEOUT * 3):
                    await test(echo, f"ws://127.0.0.1:{websocket.bound_port(server)}/")
            finally:
                await websocket.stop(server)
        asyncio.run(main())
    wrapper.__name__ = test.__name__
    return wrapper


@served
async def test_a_server_answers_its_subprotocol_without_compression(echo, url) -> None:
    async with connect(url, subprotocols=[PROTOCOL, "bearer.good"],
                       open_timeout=TIMEOUT) as ws:  # the client offers permessage-deflate
        assert ws.subprotocol == PROTOCOL
        assert ws.response.headers["Server"] == "switchboard-echo"
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "ping"}
    async with connect(url + "?access_token=good", open_timeout=TIMEOUT) as ws:
        assert ws.subprotocol is None  # not offered: none chosen (never the token)


@served
async def test_refusals_are_http_answers_before_any_websocket(echo, url) -> None:
    for kw, status in (({}, 401), ({"subprotocols": [PROTOCOL, "bearer.bad"]}, 401),
                       ({"subprotocols": ["bearer.good"], "origin": "http://evil.example"},
                        403)):
        with pytest.raises(InvalidStatus) as err:
            await connect(url, open_timeout=TIMEOUT, **kw)
        assert err.value.response.status_code == status
        if status == 401:
            assert err.value.response.headers["WWW-Authenticate"].startswith("Bearer")


@served
async def test_a_frame_above_the_limit_closes_with_1009(echo, url) -> None:
    async with connect(url, subprotocols=["bearer.good"], open_timeout=TIMEOUT) as ws:
        await ws.send("x" * 300)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == websocket.CLOSE_TOO_BIG
    while not echo.closed:  # the frames simply ended for the server's side
        await asyncio.sleep(0.01)


@served
async def test_a_connection_without_admission_is_closed_with_1008(echo, url) -> None:
    echo.admitting = False
    async with connect(url, open_timeout=TIMEOUT) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == websocket.CLOSE_POLICY
