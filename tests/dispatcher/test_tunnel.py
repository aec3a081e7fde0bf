"""dispatcher/tunnel.py: a node that does not route passes WebSocket clients on to the leader.
Real `websockets` servers and clients on 127.0.0.1 (each test runs its own asyncio loop): an
upstream with its own rules (a token, an origin) stands for the leader's console."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from twisted.internet.defer import succeed
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dispatcher import websocket
from dispatcher.guard import Throttled
from dispatcher.tunnel import CLOSE_SERVICE_RESTART, Tunnel

log = logging.getLogger(__name__)
PROTOCOL = "test.v1"
TOKEN = "tok-9f8e7d6c5b4a"  # never in a log line
TIMEOUT = 5.0


class Leader:
    """The upstream: `TOKEN` gets in (subprotocol or query), a foreign origin is refused; each
    frame comes back, except `close N` (closes with code N) and `push N` (N numbered frames)."""

    def __init__(self) -> None:
        self.refusals = Throttled(log)
        self.headers: list[dict[str, str]] = []
        self.connections: list[Any] = []
        self.closed: list[int | None] = []

    def handshake(self, connection: Any, req: Any) -> Any:
        origin = req.headers.get("Origin")
        if origin is not None and origin != "http://ok.example":
            return websocket.foreign_origin(connection, origin, self.refusals, "leader")
        if websocket.token_from(req, authorization=True) != TOKEN:
            return websocket.unauthorized(connection, "a bearer token is required")
        self.headers.append(dict(req.headers.raw_items()))
        return None

    async def connection(self, ws: Any) -> None:
        self.connections.append(ws)
        async for raw in websocket.frames(ws):
            if raw.startswith("close "):
                await ws.close(int(raw.split()[1]), "closed by the leader")
            elif raw.startswith("push "):
                for i in range(int(raw.split()[1])):
                    await ws.send(json.dumps({"n": i}))
            else:
                await ws.send(raw)
        self.closed.append(ws.close_code)


class Target:
    """What `Nodes.leader(kind)` would say: a list of answers, the last one repeated."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.forgotten = 0

    def __call__(self) -> Any:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return succeed(answer)

    def forget(self) -> None:
        self.forgotten += 1


def tunnelled(*, leader_up: bool = True, answers: tuple[str | None, ...] | None = None,
            wait: float = 1.0) -> Any:
    """Run the test with a leader (unless `leader_up` is False), a tunnel to it, the tunnel's
    URL; `answers`: what the tunnel hears of the leader's address (default: the leader's)."""

    def decorate(test: Any) -> Any:
        def wrapper() -> None:
            async def main() -> None:
                leader = Leader()
                server = await websocket.listen(
                    leader.connection, name="leader", host="127.0.0.1", port=0,
                    max_frame_bytes=1 << 20, subprotocol=PROTOCOL,
                    handshake=leader.handshake, logger=log)
                up = f"ws://127.0.0.1:{websocket.bound_port(server)}"
                if not leader_up:
                    await websocket.stop(server)
                target = Target(*(answers if answers is not None else (up,)))
                tunnel = Tunnel(name="test", host="127.0.0.1", port=0, max_frame_bytes=256,
                              leader=target, forget=target.forget, wait_seconds=wait)
                await tunnel._start()
                try:
                    async with asyncio.timeout(TIMEOUT * 3):
                        await test(leader, target, tunnel, f"ws://127.0.0.1:{tunnel.port}",
                                   server)
                finally:
                    await tunnel._stop()
                    await websocket.stop(server)
            asyncio.run(main())
        wrapper.__name__ = test.__name__
        return wrapper
    return decorate


def dial(url: str, **kw: Any) -> Any:
    kw.setdefault("subprotocols", [PROTOCOL, "bearer." + TOKEN])
    return connect(url + "/", open_timeout=TIMEOUT, **kw)


@tunnelled()
async def test_a_client_gets_the_leaders_subprotocol_and_frames_in_order(leader, target, tunnel,
                                                                         url, _s) -> None:
    async with dial(url, origin="http://ok.example") as ws:
        assert ws.subprotocol == PROTOCOL  # the leader's answer, never the token
        for i in range(50):
            await ws.send(json.dumps({"i": i}))
        assert [json.loads(await ws.recv())["i"] for _ in range(50)] == list(range(50))
        await ws.send("push 200")
        assert [json.loads(await ws.recv())["n"] for _ in range(200)] == list(range(200))
    [headers] = leader.headers
    assert headers["Origin"] == "http://ok.example"
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert tunnel.passed_on == 1


@tunnelled()
async def test_the_query_string_token_passes_on_too(leader, target, tunnel, url, _s) -> None:
    async with connect(f"{url}/?access_token={TOKEN}", open_timeout=TIMEOUT) as ws:
        assert ws.subprotocol is None
        await ws.send("hello")
        assert await ws.recv() == "hello"


@tunnelled()
async def test_an_authorization_header_passes_on_too(leader, target, tunnel, url, _s) -> None:
    async with connect(f"{url}/", open_timeout=TIMEOUT, subprotocols=[PROTOCOL],
                       additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert ws.subprotocol == PROTOCOL
        await ws.send("hello")
        assert await ws.recv() == "hello"


@tunnelled()
async def test_refusals_are_the_leaders_own(leader, target, tunnel, url, _s) -> None:
    with pytest.raises(InvalidStatus) as err:
        await dial(url, subprotocols=[PROTOCOL, "bearer.wrong"])
    assert err.value.response.status_code == 401
    assert err.value.response.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(InvalidStatus) as err:
        await dial(url, origin="http://evil.example")
    assert err.value.response.status_code == 403
    assert tunnel.passed_on == 0 and leader.connections == []


@tunnelled(answers=(None,), wait=0.6)
async def test_no_leader_known_is_503_after_waiting(leader, target, tunnel, url, _s) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(InvalidStatus) as err:
        await dial(url)
    assert err.value.response.status_code == 503
    assert err.value.response.headers["Retry-After"] == "5"
    assert asyncio.get_running_loop().time() - started >= 0.5


@tunnelled(leader_up=False, wait=0.6)
async def test_an_unreachable_leader_is_503_and_forgotten(leader, target, tunnel, url, _s
                                                          ) -> None:
    with pytest.raises(InvalidStatus) as err:
        await dial(url)
    assert err.value.response.status_code == 503
    assert target.forgotten >= 1


@tunnelled(answers=(None, None, "LATER"), wait=3.0)
async def test_a_handshake_during_a_takeover_waits_for_the_new_leader(leader, target, tunnel,
                                                                      url, server) -> None:
    target.answers = [None, None, f"ws://127.0.0.1:{websocket.bound_port(server)}"]
    async with dial(url) as ws:
        await ws.send("after the takeover")
        assert await ws.recv() == "after the takeover"


@tunnelled()
async def test_a_close_code_of_the_leader_reaches_the_client(leader, target, tunnel, url, _s
                                                             ) -> None:
    async with dial(url) as ws:
        await ws.send("close 4007")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4007
        assert ws.close_reason == "closed by the leader"


@tunnelled()
async def test_a_leader_that_dies_closes_the_client_with_service_restart(leader, target, tunnel,
                                                                         url, _s) -> None:
    async with dial(url) as ws:
        await ws.send("ping")
        assert await ws.recv() == "ping"
        leader.connections[0].transport.abort()  # no close frame: killed
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == CLOSE_SERVICE_RESTART


@tunnelled()
async def test_a_client_that_leaves_closes_its_leader_connection(leader, target, tunnel, url, _s
                                                                 ) -> None:
    async with dial(url) as ws:
        await ws.send("ping")
        assert await ws.recv() == "ping"
        await ws.close(1000, "bye")
    for _ in range(200):
        if leader.closed:
            break
        await asyncio.sleep(0.01)
    assert leader.closed == [1000]


@tunnelled()
async def test_a_client_frame_above_the_limit_closes_with_1009(leader, target, tunnel, url, _s
                                                               ) -> None:
    async with dial(url) as ws:
        await ws.send("x" * 300)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == websocket.CLOSE_TOO_BIG


@tunnelled()
async def test_stopping_the_tunnel_tells_its_clients_to_reconnect(leader, target, tunnel, url, _s
                                                                 ) -> None:
    async with dial(url) as ws:
        await ws.send("ping")
        assert await ws.recv() == "ping"
        await tunnel._stop()
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code in (websocket.CLOSE_SHUTDOWN, CLOSE_SERVICE_RESTART)


@tunnelled()
async def test_the_token_never_reaches_a_log(leader, target, tunnel, url, _s) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    keep, level = Keep(logging.DEBUG), root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        async with connect(f"{url}/?access_token={TOKEN}", open_timeout=TIMEOUT,
                           subprotocols=[PROTOCOL, "bearer." + TOKEN]) as ws:
            await ws.send("ping")
            assert await ws.recv() == "ping"
        with pytest.raises(InvalidStatus):
            await dial(url, subprotocols=["bearer." + TOKEN + "x"])
    finally:
        root.removeHandler(keep)
        root.setLevel(level)
    tunnel_lines = [r for r in records if r.name.startswith("dispatcher.tunnel")]
    assert all(TOKEN not in r.getMessage() for r in tunnel_lines), tunnel_lines


@tunnelled(answers=(None,), wait=5.0)
async def test_stopping_ends_a_handshake_that_waits_for_a_leader(leader, target, tunnel, url, _s
                                                                 ) -> None:
    """The node takes over: a handshake waiting for the next leader must not hold the port and
    the takeover up for the whole wait."""
    loop = asyncio.get_running_loop()
    waiting = asyncio.ensure_future(dial(url))
    await asyncio.sleep(0.3)
    started = loop.time()
    await tunnel._stop()
    assert loop.time() - started < 1.0
    with pytest.raises((InvalidStatus, ConnectionClosed, OSError)):
        await waiting
