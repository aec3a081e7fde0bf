"""Connection limits shared by every TCP listener of the process (HTTP, SMTP, SIP over TCP, the
two WebSocket servers): a per-peer cap on concurrent connections and one global budget kept
below the process's descriptor limit, so no source can exhaust the descriptors others need.

Sits beside guard.py at the top of the dispatcher (edges may import it). It promises:
- `Gate.admit` counts every accepted connection of every listener; a peer (source address)
  holding `per_peer` connections on a listener gets no more there, unless it is one of the
  cluster's nodes (`Gate.nodes`), whose tunnels pass many agents on.
- Past `max_connections` in all, the oldest connection still *waiting* (one that has not sent
  a complete request: HTTP headers, a WebSocket handshake, a first SMTP/SIP byte) is evicted to
  make room; when none is waiting the newcomer is refused and the Twisted ports stop accepting
  for `pause_seconds` (the kernel's backlog holds the others), instead of failing `accept()`.
- Refusals are logged through guard.Throttled (one line per listener and peer a minute), and
  `quiet_accept_errors` keeps asyncio's and Twisted's "out of descriptors" lines from storming.
- `raise_descriptor_limit` lifts the soft RLIMIT_NOFILE to the hard one (`serve` does it once).

`Guarded` wraps a Twisted factory; `websocket_connection` gives the `create_connection` class
for `websockets.asyncio.server.serve`. The runtime sets the process's limits with `configure`
before the edges start; edges take them with `limits()` and `gate()`.
"""

from __future__ import annotations

import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import protocol, tcp
from twisted.internet.posixbase import PosixReactorBase
from twisted.protocols import policies

from .guard import Throttled

log = logging.getLogger(__name__)

# Connections one listener accepts in one reactor turn: a Twisted port (`listen_tcp`), an
# asyncio server (its `backlog`). An evicted connection's descriptor is closed a turn later, so
# this bounds how far past the budget the descriptors in use can go.
MAX_ACCEPTS_PER_TURN = 16
ACCEPT_BACKLOG = MAX_ACCEPTS_PER_TURN
# Evicted sockets not closed yet (a reactor closes an aborted socket a turn later): past this
# many, a newcomer is closed at once instead (no descriptor held, no pause).
MAX_CLOSING = MAX_ACCEPTS_PER_TURN
# Descriptors kept out of the connection budget: the database, logs, threads' pipes, the
# listeners (about 40 in all), evicted sockets not closed yet, and what one turn of five
# listeners may accept before a refused socket is closed.
MIN_RESERVE = 128


@dataclass(frozen=True)
class Limits:
    max_connections: int = 0  # 0: the soft RLIMIT_NOFILE minus a reserve (`budget_for`)
    per_peer: int = 64  # concurrent connections of one source address on one listener
    header_timeout: float = 10.0  # connect (or first byte) -> complete request head
    pause_seconds: float = 1.0  # ports stop accepting this long when the budget is spent


def budget_for(soft_limit: int) -> int:
    """The connections allowed with `soft_limit` descriptors: an eighth (at least
    MIN_RESERVE) stays free for everything else the process opens."""
    return max(1, soft_limit - max(MIN_RESERVE, soft_limit // 8))


def descriptor_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_descriptor_limit() -> tuple[int, int]:
    """Lift the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit to %d: %s", hard, exc)
    return soft, hard


class Listener:
    """One listening socket's per-peer counts."""

    def __init__(self, name: str, per_peer: int) -> None:
        self.name = name
        self.per_peer = per_peer
        self.peers: dict[str, int] = {}


class Ticket:
    """One admitted connection. `busy()` once it has made a request (no longer evictable),
    `waiting()` when it waits for the next one; `release()` (idempotent) when it closes."""

    def __init__(self, gate: Gate, listener: Listener, peer: str,
                 close: Callable[[], None]) -> None:
        self.gate, self.listener, self.peer, self.close = gate, listener, peer, close
        self.released = False
        self.evicted = False
        self.served = False  # made a request at least once

    def busy(self) -> None:
        self.served = True
        self.gate._waiting.pop(self, None)

    def waiting(self) -> None:
        if not self.released and not self.evicted:
            self.gate._waiting[self] = None
            self.gate._waiting.move_to_end(self)

    def release(self) -> None:
        """The connection is closed (its descriptor free)."""
        if self.released:
            return
        self.released = True
        if self.evicted:
            self.gate.closing -= 1
        else:
            self.gate._forget(self)


class Gate:
    """The process's connections, counted across listeners (see the module docstring)."""

    def __init__(self, max_connections: int, per_peer: int, *, clock: Any = None,
                 pause_seconds: float = 1.0, now: Callable[[], float] = time.monotonic) -> None:
        if max_connections < 1 or per_peer < 1:
            raise ValueError("a gate needs max_connections >= 1 and per_peer >= 1")
        self.max_connections = max_connections
        self.per_peer = per_peer
        self.clock = clock
        self.pause_seconds = pause_seconds
        self.now = now
        self.open = 0
        self.closing = 0  # evicted or refused, descriptor not closed yet
        self.evicted = 0
        self.refused = 0
        self._waiting: OrderedDict[Ticket, None] = OrderedDict()
        self._ports: list[Any] = []
        self._resume: Any = None
        self._log = Throttled(log)
        # The addresses of the cluster's other nodes (runtime/peers.py): their tunnels carry
        # many agents' sockets, so the per-address cap does not apply to them (the budget does).
        self.nodes: frozenset[str] = frozenset()

    def listener(self, name: str, per_peer: int | None = None) -> Listener:
        return Listener(name, per_peer or self.per_peer)

    def watch(self, port: Any) -> None:
        """A Twisted listening port to pause when the budget is spent."""
        self._ports.append(port)

    def unwatch(self, port: Any) -> None:
        if port in self._ports:
            self._ports.remove(port)

    @property
    def paused(self) -> bool:
        return self._resume is not None

    def admit(self, listener: Listener, peer: str, close: Callable[[], None]) -> Ticket | None:
        """A ticket for a new connection (waiting until `busy()`), or None: refuse it."""
        now = self.now()
        if listener.peers.get(peer, 0) >= listener.per_peer and peer not in self.nodes:
            self.refused += 1
            self._log.warning(("peer", listener.name, peer), now,
                              "%s: refused a connection from %s: %d open from there (limit)",
                              listener.name, peer, listener.per_peer)
            return None
        if self.open + self.closing >= self.max_connections and self.closing >= MAX_CLOSING:
            self.refused += 1  # a burst: the evicted ones close in a turn; no pause, no line
            return None
        if self.open + self.closing >= self.max_connections and not self._evict():
            self.refused += 1
            self._pause()
            self._log.warning(("full", listener.name), now,
                              "%s: refused a connection from %s: %d connections open (the "
                              "budget), none of them waiting; not accepting for %.1f s",
                              listener.name, peer, self.open, self.pause_seconds)
            return None
        ticket = Ticket(self, listener, peer, close)
        listener.peers[peer] = listener.peers.get(peer, 0) + 1
        self.open += 1
        self._waiting[ticket] = None
        return ticket

    def _evict(self) -> bool:
        """Close the oldest waiting connection (counted as closing until it is closed)."""
        if not self._waiting:
            return False
        ticket, _ = self._waiting.popitem(last=False)
        self._forget(ticket)
        ticket.evicted = True
        self.closing += 1
        self.evicted += 1
        self._log.warning(("evict", ticket.listener.name), self.now(),
                          "%s: connection budget (%d) spent: closed the oldest connection "
                          "still waiting for a request (from %s)", ticket.listener.name,
                          self.max_connections, ticket.peer)
        try:
            ticket.close()
        except Exception:  # a transport already gone: no connectionLost will come
            self.closing -= 1
            ticket.released = True
            log.debug("closing an evicted connection failed", exc_info=True)
        return True

    def closing_started(self) -> None:
        """A refused connection whose descriptor closes later (asyncio's transports)."""
        self.closing += 1

    def closing_done(self) -> None:
        self.closing -= 1

    def _forget(self, ticket: Ticket) -> None:
        self._waiting.pop(ticket, None)
        self.open -= 1
        peers = ticket.listener.peers
        left = peers.get(ticket.peer, 1) - 1
        if left > 0:
            peers[ticket.peer] = left
        else:
            peers.pop(ticket.peer, None)

    def _pause(self) -> None:
        if self._resume is not None or self.clock is None or not self._ports:
            return
        for port in self._ports:
            port.stopReading()
        self._resume = self.clock.callLater(self.pause_seconds, self._unpause)

    def _unpause(self) -> None:
        self._resume = None
        for port in self._ports:
            port.startReading()

    def stop(self) -> None:
        if self._resume is not None and self._resume.active():
            self._resume.cancel()
        self._resume = None


# ---------------------------------------------------------------- the process's gate

_limits = Limits()
_gate: Gate | None = None


def configure(limits: Limits, clock: Any = None) -> Gate:
    """Set the process's limits (the runtime, before the edges start); a new gate."""
    global _limits, _gate
    _limits = limits
    budget = limits.max_connections or budget_for(descriptor_limit())
    _gate = Gate(budget, limits.per_peer, clock=clock, pause_seconds=limits.pause_seconds)
    return _gate


def limits() -> Limits:
    return _limits


def gate() -> Gate:
    """The process's gate (the default limits, and no pausing of ports, when the runtime set
    none: importing the reactor here would install one)."""
    return _gate if _gate is not None else configure(_limits)


# ---------------------------------------------------------------- Twisted listeners


def peer_host(addr: Any) -> str:
    return str(getattr(addr, "host", addr))


def forwarded_client(peer: str, forwarded: str | bytes | None) -> str:
    """The client's address: `peer`, unless `peer` is one of the cluster's nodes
    (`Gate.nodes`), which passes its clients on (runtime/proxy.py, tunnel.py) naming each in
    `X-Forwarded-For`: then the address that node saw, the header's last entry (the ones
    before it are what the client claimed: never trusted)."""
    if forwarded and peer in gate().nodes:
        text = forwarded.decode("latin-1") if isinstance(forwarded, bytes) else forwarded
        last = text.rsplit(",", 1)[-1].strip()
        if last:
            return last[:64]
    return peer


def client_host(request: Any) -> str:
    """An HTTP request's client address (host only; "unknown" without one), through a node
    of the cluster that passed it on (`forwarded_client`): for limits and logs per client."""
    peer = str(getattr(request.getClientAddress(), "host", None) or "unknown")
    return forwarded_client(peer, request.getHeader(b"x-forwarded-for"))


class Refusal(protocol.Protocol):
    """Writes `text` (a protocol's own "go away": SMTP 421, HTTP 503) and closes."""

    def __init__(self, text: bytes) -> None:
        self.text = text

    def connectionMade(self) -> None:
        self.transport.write(self.text)
        self.transport.loseConnection()


class GuardedProtocol(policies.ProtocolWrapper):
    """The wrapped protocol sees this as its transport: `busy()` / `waiting()` tell the gate
    whether the connection has made a request (HTTP calls them per request; otherwise the
    first byte received makes it busy)."""

    ticket: Ticket | None = None

    def busy(self) -> None:
        if self.ticket is not None:
            self.ticket.busy()

    def waiting(self) -> None:
        if self.ticket is not None:
            self.ticket.waiting()

    def dataReceived(self, data: bytes) -> None:
        if self.factory.busy_on_data:
            self.busy()
        super().dataReceived(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.ticket is not None:
            self.ticket.release()
        super().connectionLost(reason)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()


class Guarded(policies.WrappingFactory):
    """A Twisted factory behind the gate. `refusal`: bytes written to a refused connection
    before it is closed (an SMTP 421, an HTTP 503); None: closed at once. `busy_on_data`:
    False when the wrapped protocol reports its requests itself (HTTP)."""

    protocol = GuardedProtocol

    def __init__(self, wrapped: Any, name: str, *, the_gate: Gate | None = None,
                 per_peer: int | None = None, refusal: bytes | None = None,
                 busy_on_data: bool = True) -> None:
        super().__init__(wrapped)
        self.gate = the_gate or gate()
        self.listener = self.gate.listener(name, per_peer)
        self.refusal = refusal
        self.busy_on_data = busy_on_data

    def buildProtocol(self, addr: Any) -> Any:
        holder: list[GuardedProtocol] = []
        ticket = self.gate.admit(self.listener, peer_host(addr),
                                 lambda: holder[0].abort() if holder else None)
        if ticket is None:
            # Only a peer past its own cap is told why; when the budget is spent the socket is
            # closed at once (Twisted closes it before the next accept: no descriptor held).
            if self.refusal and not self.gate.paused:
                return Refusal(self.refusal)
            return None
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            ticket.release()
            return None
        p = self.protocol(self, inner)
        p.ticket = ticket
        holder.append(p)
        return p


class _Port(tcp.Port):
    """tcp.Port accepting at most MAX_ACCEPTS_PER_TURN connections a reactor turn (Twisted
    grows its accept loop by 20 each turn that used it all up)."""

    _accepts = 100

    @property  # type: ignore[override]
    def numberAccepts(self) -> int:  # noqa: N802 - Twisted API
        return min(self._accepts, MAX_ACCEPTS_PER_TURN)

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:  # noqa: N802 - Twisted API
        self._accepts = value


def listen_tcp(reactor: Any, port: int, factory: Guarded, interface: str = "",
               backlog: int = 50) -> Any:
    """`reactor.listenTCP` of a guarded factory (a port with a bounded accept loop on a real
    reactor), its port watched by the gate."""
    if isinstance(reactor, PosixReactorBase):
        listening = _Port(port, factory, backlog, interface, reactor)
        listening.startListening()
    else:  # a test's fake reactor
        listening = reactor.listenTCP(port, factory, backlog=backlog, interface=interface)
    factory.gate.watch(listening)
    return listening


# ---------------------------------------------------------------- asyncio (websockets) servers


class _Unopened(logging.LoggerAdapter):
    """websockets' logger until the handshake is done: no "connection closed" line for each
    socket dropped before it (a scanner, an evicted or refused connection)."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if msg != "connection closed":
            super().log(level, msg, *args, **kwargs)


def websocket_connection(name: str, the_gate: Gate | None = None,
                         per_peer: int | None = None) -> type:
    """A `create_connection` class for `websockets.asyncio.server.serve`: each connection
    admitted by the gate at accept (aborted at once when refused), busy once its handshake is
    done, released when it closes."""
    from websockets.asyncio.server import ServerConnection

    g = the_gate or gate()
    listener = g.listener(name, per_peer)

    class CountedConnection(ServerConnection):
        ticket: Ticket | None = None
        refused = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.protocol.logger = _Unopened(self.protocol.logger, {})
            peer = transport.get_extra_info("peername")
            self.ticket = g.admit(listener, str(peer[0]) if peer else "?", transport.abort)
            if self.ticket is None:
                self.refused = True
                g.closing_started()
                transport.abort()

        async def handshake(self, *args: Any, **kwargs: Any) -> None:
            await super().handshake(*args, **kwargs)
            if isinstance(self.protocol.logger, _Unopened):
                self.protocol.logger = self.protocol.logger.logger
            if self.ticket is not None:
                self.ticket.busy()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.refused:
                g.closing_done()
            if self.ticket is not None:
                self.ticket.release()
            super().connection_lost(exc)

    return CountedConnection


# ---------------------------------------------------------------- no log storm

ACCEPT_ERRORS = ("socket.accept() out of system resource", "Could not accept new connection",
                 "EMFILE")


class QuietAcceptErrors(logging.Filter):
    """Lets one "out of descriptors" line a minute through (with how many were dropped)."""

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self._throttled = Throttled(log, interval)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format (any error from its
            # arguments) is let through, not ours to judge: a log filter must never raise
            return True
        if not any(marker in text for marker in ACCEPT_ERRORS):
            return True
        self._throttled.warning(("accept", record.name), time.monotonic(),
                                "%s: accept() failed: out of descriptors (%s)", record.name,
                                text[:120])
        return False


def quiet_accept_errors(interval: float = 60.0) -> QuietAcceptErrors:
    """Install the filter on the loggers that report failed accepts (asyncio, twisted)."""
    f = QuietAcceptErrors(interval)
    for name in ("asyncio", "twisted"):
        logger = logging.getLogger(name)
        if not any(isinstance(x, QuietAcceptErrors) for x in logger.filters):
            logger.addFilter(f)
    return f
