"""dispatcher/net.py: the process's connection gate (per-peer cap, global budget with eviction
of connections still waiting for a request, paused ports), its Twisted factory wrapper, the
descriptor limit and the filter that keeps failed accepts from flooding the log."""

from __future__ import annotations

import logging
import resource

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from dispatcher import net


class Closable:
    def __init__(self) -> None:
        self.closed = 0

    def __call__(self) -> None:
        self.closed += 1


class FakePort:
    def __init__(self) -> None:
        self.reading = True

    def stopReading(self) -> None:  # noqa: N802 - Twisted API
        self.reading = False

    def startReading(self) -> None:  # noqa: N802 - Twisted API
        self.reading = True


def gate(max_connections: int = 10, per_peer: int = 3, clock: Clock | None = None) -> net.Gate:
    return net.Gate(max_connections, per_peer, clock=clock or Clock(), pause_seconds=1.0,
                    now=lambda: 0.0)


def test_a_peer_gets_at_most_per_peer_connections_on_one_listener() -> None:
    g = gate(per_peer=2)
    http, smtp = g.listener("http"), g.listener("smtp")
    a = [g.admit(http, "10.0.0.1", Closable()) for _ in range(3)]
    assert a[0] and a[1] and a[2] is None
    assert g.admit(http, "10.0.0.2", Closable()) is not None  # another peer
    assert g.admit(smtp, "10.0.0.1", Closable()) is not None  # another listener
    a[0].release()
    a[0].release()  # idempotent
    assert g.admit(http, "10.0.0.1", Closable()) is not None
    assert g.open == 4 and g.refused == 1


def test_a_full_budget_evicts_the_oldest_connection_still_waiting() -> None:
    g = gate(max_connections=3, per_peer=5)
    http = g.listener("http")
    closers = [Closable() for _ in range(3)]
    tickets = [g.admit(http, f"10.0.0.{i}", closers[i]) for i in range(3)]
    tickets[0].busy()  # made its request: never evicted
    newcomer = g.admit(http, "10.0.0.9", Closable())
    assert newcomer is not None
    assert [c.closed for c in closers] == [0, 1, 0]  # the oldest *waiting* one
    assert g.open == 3 and g.evicted == 1
    tickets[1].release()  # its connectionLost comes later: counted once
    assert g.open == 3


def test_a_full_budget_with_nobody_waiting_refuses_and_pauses_the_ports() -> None:
    clock = Clock()
    g = gate(max_connections=2, per_peer=5, clock=clock)
    port = FakePort()
    g.watch(port)
    http = g.listener("http")
    for i in range(2):
        g.admit(http, f"10.0.0.{i}", Closable()).busy()
    assert g.admit(http, "10.0.0.7", Closable()) is None
    assert not port.reading and g.paused
    clock.advance(1.0)
    assert port.reading and not g.paused


def test_a_kept_alive_connection_waiting_again_can_be_evicted() -> None:
    g = gate(max_connections=1, per_peer=5)
    http = g.listener("http")
    closer = Closable()
    t = g.admit(http, "10.0.0.1", closer)
    t.busy()
    assert g.admit(http, "10.0.0.2", Closable()) is None
    t.waiting()  # its response is sent; it waits for the next request
    assert g.admit(http, "10.0.0.2", Closable()) is not None
    assert closer.closed == 1


def test_refusals_are_logged_once_per_listener_and_peer(caplog) -> None:
    g = gate(per_peer=1)
    http = g.listener("http")
    g.admit(http, "10.0.0.1", Closable())
    with caplog.at_level(logging.WARNING, logger="dispatcher.net"):
        for _ in range(50):
            assert g.admit(http, "10.0.0.1", Closable()) is None
    assert len(caplog.records) == 1


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def connect(factory: net.Guarded, host: str) -> tuple[object, StringTransport]:
    p = factory.buildProtocol(IPv4Address("TCP", host, 40000))
    t = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
    if p is not None:
        p.makeConnection(t)
    return p, t


def test_the_twisted_wrapper_counts_refuses_with_its_text_and_releases() -> None:
    g = gate(max_connections=10, per_peer=1)
    factory = net.Guarded(Factory.forProtocol(Echo), "smtp", the_gate=g,
                          refusal=b"421 4.7.0 busy\r\n")
    first, t1 = connect(factory, "10.0.0.1")
    second, t2 = connect(factory, "10.0.0.1")
    assert t2.value() == b"421 4.7.0 busy\r\n" and t2.disconnecting
    first.dataReceived(b"hi")
    assert t1.value() == b"hi"
    assert not g._waiting  # a first byte makes it busy
    first.connectionLost(None)
    assert g.open == 0
    third, t3 = connect(factory, "10.0.0.1")
    assert t3.value() == b"" and not t3.disconnecting


def test_an_evicted_twisted_connection_is_aborted() -> None:
    g = gate(max_connections=1, per_peer=5)
    factory = net.Guarded(Factory.forProtocol(Echo), "sip-tcp", the_gate=g)
    _, t1 = connect(factory, "10.0.0.1")
    aborted = []
    t1.abortConnection = lambda: aborted.append(True)
    _, t2 = connect(factory, "10.0.0.2")
    assert aborted == [True] and not t2.disconnecting


def test_the_budget_keeps_a_reserve_of_descriptors() -> None:
    assert net.budget_for(256) == 128
    assert net.budget_for(65536) == 65536 - 8192


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512), hard))
        assert net.raise_descriptor_limit() == (hard, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_failed_accepts_do_not_flood_the_log(caplog) -> None:
    f = net.QuietAcceptErrors(interval=60.0)
    logger = logging.getLogger("asyncio.test-net")
    logger.addFilter(f)
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(1000):
                logger.error("socket.accept() out of system resource")
            logger.error("something else")
    finally:
        logger.removeFilter(f)
    texts = [r.getMessage() for r in caplog.records]
    assert len(texts) == 2, texts
    assert "out of descriptors" in texts[0] and texts[1] == "something else"


@pytest.mark.parametrize("bad", [(0, 1), (1, 0)])
def test_a_gate_needs_room(bad) -> None:
    with pytest.raises(ValueError):
        net.Gate(*bad)


def test_a_websocket_server_counts_its_connections_at_accept() -> None:
    """A real websockets server with the gate's connection class: the second socket of one
    source is aborted before any handshake; the first, once open, is no longer evictable."""
    import asyncio

    from websockets.asyncio.client import connect as ws_connect
    from websockets.asyncio.server import serve

    g = net.Gate(10, 1, now=lambda: 0.0)

    async def echo(ws) -> None:
        async for message in ws:
            await ws.send(message)

    async def scenario() -> None:
        async with serve(echo, "127.0.0.1", 0,
                         create_connection=net.websocket_connection("ws", the_gate=g)) as server:
            port = server.sockets[0].getsockname()[1]
            async with ws_connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"
                assert g.open == 1 and not g._waiting
                with pytest.raises(Exception):  # noqa: B017 - reset or closed, as it happens
                    async with ws_connect(f"ws://127.0.0.1:{port}/", open_timeout=2) as second:
                        await second.recv()
                assert g.open == 1 and g.refused == 1
            for _ in range(50):
                if g.open == 0:
                    break
                await asyncio.sleep(0.02)
            assert g.open == 0 and g.closing == 0

    asyncio.run(scenario())


def test_a_cluster_nodes_forwarded_client_counts_and_nobody_elses(monkeypatch) -> None:
    """net.forwarded_client: X-Forwarded-For is believed only from a node of the cluster
    (Gate.nodes), and then only its last entry (what that node saw)."""
    gate = net.Gate(100, 5)
    monkeypatch.setattr(net, "_gate", gate)
    assert net.forwarded_client("10.0.0.12", "203.0.113.7") == "10.0.0.12"  # not a node
    gate.nodes = frozenset({"10.0.0.12"})
    assert net.forwarded_client("10.0.0.12", "203.0.113.7") == "203.0.113.7"
    assert net.forwarded_client("10.0.0.12", b"198.51.100.1, 203.0.113.7") == "203.0.113.7"
    assert net.forwarded_client("10.0.0.12", None) == "10.0.0.12"
    assert net.forwarded_client("10.0.0.12", " , ") == "10.0.0.12"
    assert net.forwarded_client("192.0.2.1", "203.0.113.7") == "192.0.2.1"


def test_a_cluster_node_is_not_held_to_the_per_address_cap(monkeypatch) -> None:
    gate = net.Gate(100, 2)
    listener = gate.listener("console")
    tickets = [gate.admit(listener, "10.0.0.12", lambda: None) for _ in range(2)]
    assert all(tickets) and gate.admit(listener, "10.0.0.12", lambda: None) is None
    gate.nodes = frozenset({"10.0.0.12"})
    assert gate.admit(listener, "10.0.0.12", lambda: None) is not None
    assert gate.admit(listener, "10.0.0.13", lambda: None) is not None
