"""prompt.py: a write leaves at once when nothing waits before it, else behind what waits, in
order; TLS and unknown transports keep Twisted's buffered write. On real sockets (a socket pair
under Twisted's TCP connection) and real pipes, with a memory reactor that records who waits to
write."""

from __future__ import annotations

import os
import socket

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from channels.email import prompt


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(1)
    reactor = MemoryReactor()
    conn = tcp.Connection(ours, Protocol(), reactor)
    conn.connected = 1
    yield conn, theirs, reactor
    ours.close()
    theirs.close()


def received(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


def test_an_idle_connection_sends_at_once_without_waiting_for_the_reactor(pair) -> None:
    conn, theirs, reactor = pair
    prompt.send(conn, b"250 2.0.0 OK\r\n")
    assert received(theirs, 14) == b"250 2.0.0 OK\r\n"
    assert conn not in reactor.writers  # nothing was buffered


def test_a_write_behind_buffered_bytes_waits_its_turn(pair) -> None:
    conn, theirs, reactor = pair
    conn.write(b"first ")  # buffered: waits for the reactor
    prompt.send(conn, b"second")
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        theirs.recv(100)  # nothing jumped the queue
    assert conn in reactor.writers
    conn.doWrite()
    theirs.settimeout(1)
    assert received(theirs, 12) == b"first second"


def test_what_the_kernel_does_not_take_is_buffered_in_order(pair) -> None:
    conn, theirs, reactor = pair
    big = os.urandom(4 * 1024 * 1024)  # more than a socket buffer holds
    prompt.send(conn, big)
    assert conn in reactor.writers  # the rest waits for the reactor
    got = bytearray()
    while len(got) < len(big):
        got += theirs.recv(1 << 20)
        conn.doWrite()
    assert bytes(got) == big


def test_through_the_connection_gate_wrapper(pair) -> None:
    conn, theirs, reactor = pair
    wrapper = ProtocolWrapper(WrappingFactory(Protocol), Protocol())
    wrapper.makeConnection(conn)
    prompt.send(wrapper, b"220 ready\r\n")
    assert received(theirs, 11) == b"220 ready\r\n"
    assert conn not in reactor.writers


def test_a_tls_connection_keeps_the_buffered_write(pair) -> None:
    conn, theirs, reactor = pair
    conn.TLS = True  # what startTLS sets: every byte must go through TLS
    written = []
    conn.write = written.append
    prompt.send(conn, b"250 OK\r\n")
    assert written == [b"250 OK\r\n"]


def test_an_unknown_transport_gets_its_own_write() -> None:
    transport = StringTransport()
    prompt.send(transport, b"354 go on\r\n")
    assert transport.value() == b"354 go on\r\n"


def test_a_closing_connection_is_left_to_twisted(pair) -> None:
    conn, theirs, reactor = pair
    conn.disconnecting = True
    written = []
    conn.write = written.append
    prompt.send(conn, b"221 bye\r\n")
    assert written == [b"221 bye\r\n"]
