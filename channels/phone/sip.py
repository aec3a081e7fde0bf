"""SIP transport and transaction layers of the phone edge (RFC 3261 §17, §18, §9.2).

Sits between the sockets and the transaction users (registrar.py, control.py). Promises:
- UDP and TCP on one host; every request is answered or dropped, never crashes the server:
  unreadable requests get 400 (505 for another SIP version) when their headers allow a response,
  everything else is logged and dropped (parse.py says which).
- Responses go back over the flow the request came in on (the same TCP connection, or the UDP
  source address and port, as RFC 3581 `rport` does), so phones behind NAT work. Datagrams
  leave from a sender thread, in order (`_UdpSender`); everything else runs in the reactor.
- Server transactions (§17.2): INVITE (100 Trying at once; a retransmitted INVITE gets the last
  response again; final non-2xx retransmitted on timer G until the ACK, given up on timer H; the
  ACK is absorbed and timer I ends the transaction; 2xx ends it, RFC 6026 keeps it to absorb
  retransmitted INVITEs for timer L) and non-INVITE (final response re-sent to retransmissions
  until timer J).
- Client transactions (§17.1): INVITE (timer A retransmits over UDP, B gives up: 408 to the TU;
  ACK for a non-2xx final sent here, timer D absorbs retransmissions; 2xx and their
  retransmissions go to the TU) and non-INVITE (E retransmits, F gives up). The TU may stop
  the retransmissions of a request nobody answered yet (`stop_retransmitting`).
- CANCEL (§9.2): matched to the INVITE server transaction it names; 200 to the CANCEL here, the
  TU decides the 487. No match: 481.
- Failures: a malformed request is logged at most once a minute per source (`guard.Throttled`);
  an unexpected exception while handling a message is logged (at most once a minute per source
  and exception type, with the traceback) under a request id that the 500 answering that one
  request carries in its reason phrase; the transaction ends normally, nothing else is touched.
Every timer runs on the injected IReactorTime (all of them on one DelayedCall: `Timers`), so the
unit tests drive them with task.Clock.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import protocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dispatcher import net
from dispatcher.guard import Throttled

from . import errors
from .parse import (
    FramingError,
    ParseError,
    Request,
    Response,
    StreamFramer,
    Via,
    parse,
    parse_uri,
    split_list,
)

log = logging.getLogger(__name__)

T1 = 0.5  # §17.1.1.1: RTT estimate
T2 = 4.0  # longest retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # longest time a message stays in the network
TIMER_B = 64 * T1  # INVITE client transaction timeout (also F, H, J, L, M)
TIMER_D_UNRELIABLE = 32.0
MAGIC_COOKIE = "z9hG4bK"
SIP_PORT = 5060
MAX_DATAGRAM = 65535
SENDER_JOIN_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Flow:
    """Where a message came from / goes to: transport, address and port."""

    transport: str  # "udp" | "tcp"
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    def __str__(self) -> str:
        return f"{self.transport}:{self.host}:{self.port}"

    @classmethod
    def from_text(cls, text: str) -> Flow:
        transport, host, port = text.rsplit(":", 2) if text.count(":") >= 2 else ("", "", "")
        if transport not in ("udp", "tcp") or not port.isdigit():
            raise ValueError(f"not a flow: {text!r}")
        return cls(transport, host.strip("[]"), int(port))


class TransactionUser(Protocol):
    """What the endpoint hands up (control.py and registrar.py behind one dispatcher)."""

    def request(self, txn: ServerTransaction) -> None: ...
    def ack(self, request: Request, flow: Flow) -> None: ...
    def cancel(self, invite: ServerTransaction, cancel: Request) -> None: ...
    def stray_response(self, response: Response, flow: Flow) -> None: ...


def response_to(request: Request, status: int, reason: str | None = None,
                to_tag: str | None = None) -> Response:
    """A response to `request` per §8.2.6.2: Via, From, Call-ID, CSeq copied, To copied with
    `to_tag` added when it has none (never on 100)."""
    headers = [h for h in request.headers if h[0] in ("via", "from", "call-id", "cseq")]
    to = request.get("to") or ""
    if to_tag and status != 100 and ";tag=" not in to.replace(" ", "").lower():
        to = f"{to};tag={to_tag}"
    headers.insert(2 if len(headers) > 1 else 0, ("to", "To", to))
    return Response(headers, b"", status, reason or errors.REASONS.get(status, "Unknown"))


def transaction_key(request: Request, via: Via) -> tuple:
    """§17.2.3: branch + sent-by + method (ACK matches its INVITE); RFC 2543 peers without the
    magic cookie are matched on Call-ID, From tag, CSeq number and the top Via."""
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return (branch, via.sent_by, method)
    frm = request.from_
    return ("2543", request.call_id, frm.tag, request.cseq.number, via.sent_by, method)


class Timer:
    """One pending call of `Timers`; `cancel()` and `active()` as an IDelayedCall's."""

    __slots__ = ("when", "fn", "args", "done", "owner")

    def __init__(self, owner: Timers, when: float, fn: Callable, args: tuple) -> None:
        self.owner, self.when, self.fn, self.args, self.done = owner, when, fn, args, False

    def cancel(self) -> None:
        if not self.done:
            self.done = True
            self.owner.cancelled += 1

    def active(self) -> bool:
        return not self.done


def stop_all(timers: list[Timer]) -> None:
    """Cancel every timer of `timers` still pending, and empty it (a call's or a session's)."""
    for t in timers:
        if t.active():
            t.cancel()
    timers.clear()


class Timers:
    """The transaction and call timers of the edge on one reactor DelayedCall: a heap, armed
    for its earliest entry. Thousands of transactions each hold two or three timers; one
    DelayedCall per timer (and an asyncio handle behind each) cost more than the SIP work.
    Cancelled entries stay in the heap until due, or until they are most of it."""

    COMPACT_AT = 1024

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._armed: IDelayedCall | None = None
        self._armed_at: float | None = None
        self.cancelled = 0  # cancelled entries still in the heap

    def call_later(self, delay: float, fn: Callable, *args: Any) -> Timer:
        timer = Timer(self, self.clock.seconds() + delay, fn, args)
        heapq.heappush(self.heap, (timer.when, next(self._seq), timer))
        if self._armed_at is None or timer.when < self._armed_at:
            self._arm(timer.when)
        return timer

    def _arm(self, when: float) -> None:
        if self._armed is not None and self._armed.active():
            self._armed.cancel()
        self._armed_at = when
        self._armed = self.clock.callLater(max(0.0, when - self.clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._armed = self._armed_at = None
        now = self.clock.seconds()
        heap = self.heap
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if timer.done:
                self.cancelled -= 1
                continue
            timer.done = True
            try:
                timer.fn(*timer.args)
            except Exception:
                log.exception("timer %r failed", timer.fn)
        if len(heap) > self.COMPACT_AT and self.cancelled > len(heap) // 2:
            self.heap = heap = [e for e in heap if not e[2].done]
            heapq.heapify(heap)
            self.cancelled = 0
        if heap and (self._armed_at is None or heap[0][0] < self._armed_at):
            self._arm(heap[0][0])  # (timers set while firing may have armed a later time)

    def stop(self) -> None:
        if self._armed is not None and self._armed.active():
            self._armed.cancel()
        self._armed = self._armed_at = None
        self.heap.clear()
        self.cancelled = 0


class ServerTransaction:
    """One request we answer. The TU calls `respond()`; retransmissions are handled here."""

    __slots__ = ("endpoint", "key", "request", "flow", "invite", "state", "last", "timers",
                 "interval", "to_tag", "data", "on_end")

    def __init__(self, endpoint: Endpoint, key: tuple, request: Request, flow: Flow) -> None:
        self.endpoint = endpoint
        self.key = key
        self.request = request
        self.flow = flow
        self.invite = request.method == "INVITE"
        self.state = "proceeding" if self.invite else "trying"
        self.last: bytes | None = None
        self.timers: list[Timer] = []
        self.interval = T1
        self.to_tag: str | None = None
        self.data: Any = None  # for the TU (the call this INVITE belongs to)
        self.on_end: Callable[[ServerTransaction], None] | None = None

    @property
    def final(self) -> bool:
        return self.state not in ("proceeding", "trying")

    def response(self, status: int, reason: str | None = None,
                 to_tag: str | None = None) -> Response:
        return response_to(self.request, status, reason, to_tag or self.to_tag)

    def reply(self, status: int, reason: str | None = None, *,
              headers: list[tuple[str, str]] = (), to_tag: str | None = None) -> Response:
        resp = self.response(status, reason, to_tag)
        for name, value in headers:
            resp.add(name, value)
        self.respond(resp)
        return resp

    def respond(self, resp: Response) -> None:
        if self.final:
            log.debug("late response %d to a finished transaction dropped", resp.status)
            return
        data = resp.to_bytes()
        self.last = data
        self.endpoint.send(data, self.flow)
        if resp.status < 200:
            if not self.invite:
                self.state = "proceeding"
            return
        timers = self.endpoint.timers
        reliable = self.flow.reliable
        if self.invite and resp.status < 300:
            self.state = "accepted"  # RFC 6026: absorbs retransmitted INVITEs for timer L
            self.timers.append(timers.call_later(TIMER_B, self._terminate))
        elif self.invite:
            self.state = "completed"
            if not reliable:
                self.timers.append(timers.call_later(self.interval, self._timer_g))
            self.timers.append(timers.call_later(TIMER_B, self._timer_h))
        else:
            self.state = "completed"
            self.timers.append(timers.call_later(0 if reliable else TIMER_B, self._terminate))

    def retransmitted(self) -> None:
        """The same request again: re-send the last response (§17.2.1, §17.2.2)."""
        if self.last is not None and self.state != "confirmed":
            self.endpoint.send(self.last, self.flow)

    def acked(self) -> None:
        if self.state == "completed":
            self.state = "confirmed"
            self._cancel_timers()
            delay = 0 if self.flow.reliable else T4
            self.timers.append(self.endpoint.timers.call_later(delay, self._terminate))

    def _timer_g(self) -> None:
        if self.state != "completed":
            return
        self.endpoint.send(self.last, self.flow)
        self.interval = min(2 * self.interval, T2)
        self.timers.append(self.endpoint.timers.call_later(self.interval, self._timer_g))

    def _timer_h(self) -> None:
        if self.state == "completed":
            log.info("no ACK for the final response to INVITE %s (timer H)", self.request.call_id)
        self._terminate()

    def _cancel_timers(self) -> None:
        for t in self.timers:
            if t.active():
                t.cancel()
        self.timers.clear()

    def _terminate(self) -> None:
        self._cancel_timers()
        self.state = "terminated"
        self.endpoint.server.pop(self.key, None)
        if self.on_end is not None:
            self.on_end(self)


class ClientTransaction:
    """One request we send. `on_response(resp)` gets every response passed up (§17.1);
    a timeout or a transport error arrives as a 408 made here."""

    __slots__ = ("endpoint", "key", "request", "data", "flow", "invite", "state", "timers",
                 "interval", "on_response", "ack", "quiet")

    def __init__(self, endpoint: Endpoint, request: Request, flow: Flow,
                 on_response: Callable[[Response], None]) -> None:
        self.endpoint = endpoint
        self.request = request
        self.flow = flow
        self.invite = request.method == "INVITE"
        self.on_response = on_response
        self.key = (request.top_via.branch, request.method)
        self.data = request.to_bytes()
        self.state = "calling" if self.invite else "trying"
        self.timers: list[Timer] = []
        self.interval = T1
        self.ack: bytes | None = None
        self.quiet = False  # no more retransmissions (`stop_retransmitting`)

    @property
    def branch(self) -> str:
        return self.key[0]

    def start(self) -> None:
        timers = self.endpoint.timers
        self.endpoint.client[self.key] = self
        self.endpoint.send(self.data, self.flow)
        if not self.flow.reliable:
            self.timers.append(timers.call_later(self.interval, self._retransmit))
        self.timers.append(timers.call_later(TIMER_B, self._timeout))

    def stop_retransmitting(self) -> None:
        """The TU no longer wants an answer it has not had yet: timers A/E stop, so the request
        reaches nobody from now on; the transaction stays until timer B/F to take a response
        already on its way (a proxy's branch given up before any provisional, §9.1: the
        CANCEL may only follow one)."""
        self.quiet = True

    def _retransmit(self) -> None:
        if self.quiet or self.state not in ("calling", "trying", "proceeding"):
            return
        if self.invite and self.state == "proceeding":
            return  # timer A stops at the first provisional response
        self.endpoint.send(self.data, self.flow)
        self.interval = 2 * self.interval if self.invite else min(2 * self.interval, T2)
        if not self.invite and self.state == "proceeding":
            self.interval = T2
        self.timers.append(self.endpoint.timers.call_later(self.interval, self._retransmit))

    def _timeout(self) -> None:
        if self.state in ("calling", "trying", "proceeding"):
            self._terminate()
            self._deliver(response_to(self.request, 408, "Request Timeout (no response)"))
        elif self.state in ("completed", "accepted"):
            self._terminate()

    def received(self, resp: Response) -> None:
        if self.state == "terminated":
            return
        if resp.status < 200:
            if self.state in ("calling", "trying"):
                self.state = "proceeding"
            if self.state == "proceeding":
                self._deliver(resp)
            return
        if self.invite and resp.status < 300:
            if self.state != "accepted":  # RFC 6026: 2xx retransmissions go up as well
                self.state = "accepted"
                self._cancel_timers()
                self.timers.append(self.endpoint.timers.call_later(TIMER_B, self._terminate))
            self._deliver(resp)
            return
        if self.invite:
            if self.ack is None:
                self.ack = self._ack_for(resp).to_bytes()
            self.endpoint.send(self.ack, self.flow)
            if self.state == "completed":
                return  # a retransmitted final response: ACK again, nothing else
            self.state = "completed"
            self._cancel_timers()
            delay = 0 if self.flow.reliable else TIMER_D_UNRELIABLE
            self.timers.append(self.endpoint.timers.call_later(delay, self._terminate))
            self._deliver(resp)
            return
        if self.state == "completed":
            return
        self.state = "completed"
        self._cancel_timers()
        self.timers.append(self.endpoint.timers.call_later(0 if self.flow.reliable else T4,
                                                         self._terminate))
        self._deliver(resp)

    def _ack_for(self, resp: Response) -> Request:
        """§17.1.1.3: the ACK for a non-2xx final response is part of this transaction."""
        req = self.request
        headers = [("via", "Via", split_list(req.get("via") or "")[0])]
        for k, name, v in req.headers:
            if k in ("from", "call-id", "route", "max-forwards"):
                headers.append((k, name, v))
        headers.append(("to", "To", resp.get("to") or ""))
        headers.append(("cseq", "CSeq", f"{req.cseq.number} ACK"))
        return Request(headers, b"", "ACK", req.uri)

    def _deliver(self, resp: Response) -> None:
        try:
            self.on_response(resp)
        except Exception:
            log.exception("transaction user failed on %d %s", resp.status, self.request.method)

    def _cancel_timers(self) -> None:
        for t in self.timers:
            if t.active():
                t.cancel()
        self.timers.clear()

    def _terminate(self) -> None:
        self._cancel_timers()
        self.state = "terminated"
        if self.endpoint.client.get(self.key) is self:
            del self.endpoint.client[self.key]


# ---------------------------------------------------------------- transports


class _UdpSender:
    """Sends datagrams from a thread of its own, in order. On loopback and busy machines a
    `sendto` costs as much as parsing the message (the kernel delivers it to the receiver
    inside the call); the call releases the GIL, so the reactor thread goes on reading and
    parsing meanwhile. Only the socket is shared (sendto is thread-safe)."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="sip-udp-send", daemon=True)
        self.thread.start()

    def put(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put((data, addr))

    def _run(self) -> None:
        get, sendto = self.queue.get, self.sock.sendto
        while True:
            item = get()
            if item is None:
                return
            try:
                sendto(*item)
            except OSError as e:  # unreachable, bad address: UDP gives no guarantee anyway
                log.debug("UDP to %s failed: %s", item[1], e)

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(SENDER_JOIN_SECONDS)


class _Datagrams(protocol.DatagramProtocol):
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def datagramReceived(self, data: bytes, addr: tuple) -> None:  # noqa: N802 - Twisted API
        self.endpoint.received(data, Flow("udp", addr[0], addr[1]))


class _Stream(protocol.Protocol):
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.framer = StreamFramer()
        self.flow: Flow | None = None
        self.pending: list[bytes] = []

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.flow = Flow("tcp", peer.host, peer.port)
        self.endpoint.connections[self.flow] = self
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()

    def dataReceived(self, data: bytes) -> None:
        try:
            items = self.framer.feed(data)
        except FramingError as e:
            self.endpoint.refuse(e, self.flow)
            self.transport.loseConnection()
            return
        for item in items:
            if isinstance(item, ParseError):
                self.endpoint.refuse(item, self.flow)
            else:
                self.endpoint.dispatch(item, self.flow)

    def connectionLost(self, reason: Any = None) -> None:
        if self.flow is not None and self.endpoint.connections.get(self.flow) is self:
            del self.endpoint.connections[self.flow]


class _StreamFactory(protocol.Factory):
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def buildProtocol(self, addr: Any) -> _Stream:
        return _Stream(self.endpoint)


class _OutgoingStream(protocol.ClientFactory):
    def __init__(self, endpoint: Endpoint, flow: Flow, first: bytes) -> None:
        self.endpoint, self.flow, self.first = endpoint, flow, first

    def buildProtocol(self, addr: Any) -> _Stream:
        p = _Stream(self.endpoint)
        p.pending.append(self.first)
        return p

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:  # noqa: N802
        log.info("TCP connection to %s failed: %s", self.flow, reason.getErrorMessage())


# ---------------------------------------------------------------- the endpoint


class Endpoint:
    """Sockets plus the two transaction tables, on one host (UDP and TCP ports)."""

    def __init__(self, reactor: Any, user: TransactionUser, host: str = "127.0.0.1",
                 udp_port: int = SIP_PORT, tcp_port: int | None = SIP_PORT,
                 clock: IReactorTime | None = None) -> None:
        self.reactor = reactor
        self.clock = clock or reactor
        self.user = user
        self.host = host
        self.udp_port = udp_port
        self.tcp_port = tcp_port
        self.timers = Timers(self.clock)
        self.server: dict[tuple, ServerTransaction] = {}
        self.client: dict[tuple, ClientTransaction] = {}
        self.connections: dict[Flow, _Stream] = {}
        self._udp: Any = None
        self._sender: _UdpSender | None = None
        self._tcp: Any = None
        self._branches = itertools.count(1)
        self._prefix = os.urandom(4).hex()
        self.noisy = Throttled(log)  # per (source address, kind)

    # ---- life cycle

    def start(self) -> None:
        self._udp = self.reactor.listenUDP(self.udp_port, _Datagrams(self), interface=self.host,
                                           maxPacketSize=MAX_DATAGRAM)
        self.udp_port = self._udp.getHost().port
        self._sender = _UdpSender(self._udp.socket)
        if self.tcp_port is not None:
            # Behind the process's connection gate (per-source cap, global budget; net.py).
            self._tcp = net.listen_tcp(self.reactor, self.tcp_port,
                                       net.Guarded(_StreamFactory(self), "sip-tcp"), self.host)
            self.tcp_port = self._tcp.getHost().port

    def stop(self) -> Any:
        from twisted.internet import defer

        waits = []
        for txn in list(self.server.values()):
            txn._cancel_timers()
        for ctx in list(self.client.values()):
            ctx._cancel_timers()
        self.server.clear()
        self.client.clear()
        self.timers.stop()
        for conn in list(self.connections.values()):
            conn.transport.loseConnection()
        if self._sender is not None:
            self._sender.stop()  # what was queued is sent first
            self._sender = None
        if self._udp is not None:
            waits.append(defer.maybeDeferred(self._udp.stopListening))
        if self._tcp is not None:
            gate = getattr(getattr(self._tcp, "factory", None), "gate", None)
            if gate is not None:
                gate.unwatch(self._tcp)
            waits.append(defer.maybeDeferred(self._tcp.stopListening))
        return defer.DeferredList(waits)

    # ---- identity

    def branch(self) -> str:
        return f"{MAGIC_COOKIE}{self._prefix}{next(self._branches):x}"

    def via(self, flow: Flow, branch: str | None = None) -> str:
        transport = "TCP" if flow.reliable else "UDP"
        port = self.tcp_port if flow.reliable and self.tcp_port else self.udp_port
        return f"SIP/2.0/{transport} {self.host}:{port};branch={branch or self.branch()};rport"

    def uri(self) -> str:
        return f"sip:{self.host}:{self.udp_port}"

    def is_us(self, host: str, port: int | None) -> bool:
        return host.strip("[]") == self.host and (port or SIP_PORT) in (self.udp_port,
                                                                           self.tcp_port)

    def flow_to(self, source: str, contact: str) -> Flow:
        """The flow to a registered phone (`source` and `contact` of its binding): the one it
        registered over while that lasts (always, over UDP), else a new one to its Contact
        (its TCP connection is gone)."""
        try:
            flow: Flow | None = Flow.from_text(source)
        except ValueError:
            flow = None
        if flow is not None and (flow.transport == "udp" or flow in self.connections):
            return flow
        try:
            return flow_of_uri(contact)
        except ParseError:
            return flow or Flow("udp", "127.0.0.1", SIP_PORT)

    # ---- sending

    def send(self, data: bytes, flow: Flow) -> None:
        if flow.transport == "udp":
            if self._sender is not None:
                self._sender.put(data, (flow.host, flow.port))
            elif self._udp is not None:
                self._udp.write(data, (flow.host, flow.port))
            return
        conn = self.connections.get(flow)
        if conn is not None:
            conn.transport.write(data)
            return
        log.debug("opening TCP to %s", flow)
        self.reactor.connectTCP(flow.host, flow.port, _OutgoingStream(self, flow, data))

    def request(self, request: Request, flow: Flow,
                on_response: Callable[[Response], None]) -> ClientTransaction:
        """Sends `request` (its top Via must be ours, with a fresh branch) in a client
        transaction."""
        ctx = ClientTransaction(self, request, flow, on_response)
        ctx.start()
        return ctx

    def send_stateless(self, message: Request | Response, flow: Flow) -> None:
        self.send(message.to_bytes(), flow)

    # ---- receiving

    def received(self, data: bytes, flow: Flow) -> None:
        if not data.strip(b"\r\n\0 "):
            return  # keep-alive
        try:
            msg = parse(data)
        except ParseError as e:
            self.refuse(e, flow)
            return
        self.dispatch(msg, flow)

    def refuse(self, error: ParseError, flow: Flow | None) -> None:
        request = error.answerable()
        now = self.clock.seconds()
        key = (flow.host if flow is not None else None, "malformed")
        if request is None or flow is None:
            self.noisy.log(logging.INFO, key, now, "dropped an unreadable message from %s: %s",
                           flow, error.reason)
            return
        self.noisy.log(logging.INFO, key, now, "refused a malformed %s from %s (%d): %s",
                       request.method, flow, error.status, error.reason)
        if request.method == "ACK":
            return
        resp = response_to(request, error.status, None, self._prefix)
        resp.add("Warning", f'399 {self.host} "{errors.warning_text(error.reason)}"')
        self.send(resp.to_bytes(), flow)

    def dispatch(self, msg: Request | Response, flow: Flow) -> None:
        try:
            if isinstance(msg, Response):
                self._response(msg, flow)
            else:
                self._request(msg, flow)
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the server
            self._failed(exc, msg, flow, None)

    def _failed(self, exc: Exception, msg: Request | Response, flow: Flow,
                txn: ServerTransaction | None) -> None:
        """`msg` could not be handled: a ParseError (a structured header read later than
        parse() checked) is the sender's 400; anything else is our bug, answered 500 for this
        request only, under a request id that the log line (throttled) carries too."""
        if isinstance(exc, ParseError):
            exc.message = msg
            if txn is None:
                self.refuse(exc, flow)
            elif not txn.final:
                self.noisy.log(logging.INFO, (flow.host, "malformed"), self.clock.seconds(),
                               "refused a malformed %s from %s (%d): %s", txn.request.method,
                               flow, exc.status, exc.reason)
                txn.reply(exc.status, headers=[
                    ("Warning", f'399 {self.host} "{errors.warning_text(exc.reason)}"')])
            return
        rid = os.urandom(4).hex()
        what = msg.method if isinstance(msg, Request) else f"{msg.status} response"
        self.noisy.error((flow.host, type(exc).__name__), self.clock.seconds(),
                         "request %s: %s from %s failed: %s", rid, what, flow,
                         "".join(traceback.format_exception(exc)).rstrip())
        if not isinstance(msg, Request) or msg.method == "ACK":
            return
        reason = f"Server Internal Error (request {rid})"
        if txn is None:
            self.send(response_to(msg, 500, reason, self._prefix).to_bytes(), flow)
        elif not txn.final:
            txn.reply(500, reason)

    def _response(self, resp: Response, flow: Flow) -> None:
        via = resp.top_via
        ctx = self.client.get((via.branch, resp.cseq.method))
        if ctx is not None:
            ctx.received(resp)
        else:
            self.user.stray_response(resp, flow)

    def _request(self, req: Request, flow: Flow) -> None:
        via = req.top_via
        key = transaction_key(req, via)
        txn = self.server.get(key)
        if req.method == "ACK":
            if txn is not None and txn.state in ("completed", "confirmed"):
                txn.acked()  # ACK for a non-2xx final: absorbed (§17.2.1)
            elif txn is not None and txn.state == "proceeding":
                return  # an ACK before any final response: nothing to acknowledge
            else:
                self.user.ack(req, flow)  # ACK for a 2xx: end to end, the TU forwards it
            return
        if txn is not None:
            txn.retransmitted()
            return
        if req.method == "CANCEL":
            self._cancel(req, flow, key)
            return
        txn = ServerTransaction(self, key, req, flow)
        self.server[key] = txn
        if txn.invite:
            txn.respond(txn.response(100))
        try:
            self.user.request(txn)
        except Exception as exc:  # noqa: BLE001 - answered in its own transaction
            self._failed(exc, req, flow, txn)

    def _cancel(self, req: Request, flow: Flow, key: tuple) -> None:
        txn = ServerTransaction(self, key, req, flow)
        self.server[key] = txn
        invite = self.server.get(key[:-1] + ("INVITE",))
        if invite is None or not invite.invite:
            txn.reply(481)
            return
        txn.reply(200, to_tag=invite.to_tag)
        if not invite.final:
            self.user.cancel(invite, req)


def flow_of_uri(uri: str) -> Flow:
    """Where to send a request for a SIP URI (its host, port and transport). Raises
    ParseError."""
    parsed = parse_uri(uri)
    transport = (parsed.param("transport") or "udp").lower()
    return Flow("tcp" if transport == "tcp" else "udp", parsed.host.strip("[]"),
                parsed.port or SIP_PORT)
