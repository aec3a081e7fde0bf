"""The telephony integration API (CTI): a JSON API for PBXs that keep the media themselves
(Asterisk, FreeSWITCH, a cloud voice service). Part of the phone edge; it talks to the dispatcher
only through the services (`Calls` for calls and devices, `Sessions.transfer` for a route that
failed) and the committed outcomes of `Assignment.listen`.

A PBX reports `call.arrived`, `call.answered`, `call.ended`, `call.abandoned`, `device.state`
and `route.failed` over a WebSocket (`websockets` on the reactor's asyncio loop) or, one event
per request, with `POST /cti/events` on the runtime's HTTP site; the dispatcher pushes `offer`,
`route` and `cancel_route` over the WebSocket. Wire names: messages.py; docs/cti-protocol.md has
the sequences.

What it promises:
- Every socket and request carries a JWT (checked by `dispatcher.service.tokens`: pinned
  algorithm, exp/iat/aud/iss/sub) with role `integration`: none or an invalid one is refused
  with HTTP 401 (at the WebSocket handshake, before any WebSocket exists), an agent's or a
  supervisor's with 403. A browser `Origin` not listed is refused with 403. Tokens never reach
  the log.
- A PBX event is acknowledged (`ok`, HTTP 200) only after the Calls Deferred fired, i.e. after
  the change was committed. Events of one connection are applied in the order they came.
- Bad input (not JSON or nested deeper than `dispatcher.service.wire.MAX_DEPTH`, unknown type,
  missing or oversized fields) gets an `error` with a code, is logged (at most once per
  guard.LOG_INTERVAL_SECONDS per integration or address and kind, like every refusal), and the
  connection stays open; frames above `max_frame_bytes` close it with 1009. Nothing a PBX
  sends crashes the server: an unexpected failure is `internal` (HTTP 500) with an `incident`
  id, logged once with its trace.
- A call belongs to the integration (token subject) that reported it: only its connections get
  the call's `offer`/`route`/`cancel_route` (every live connection of that integration, so a
  PBX may keep two for redundancy), and another integration touching the call is `forbidden`.
- Replay: each call's latest `offer`/`route`/`cancel_route` that the PBX has not acted on
  (answered, ended) is sent again, in the order issued, after the `welcome` of the
  integration's next connection (instructions.py: bounded), so what was issued while its link
  was down is not lost; after a restart of the dispatcher, the route of every CTI call assigned
  to an agent.
- A `route` not followed by `call.answered` within `route_timeout` seconds is failed by the
  dispatcher itself, as a PBX's `route.failed` would be (the call back in its queue, never
  again to that agent, `cancel_route {route_failed, detail no_answer}`), logged once. The timer
  runs on the reactor's clock.
- `device.state` `busy` and `ringing` make the agent engaged on the phone (no phone task);
  `ringing` while one of our calls is offered or routed to them is that call's, and changes
  nothing.
- The WebSocket server is set up as the console's (dispatcher/websocket.py: limits, no
  compression, the connection gate, handshake refusals) and a frame is read by the console's
  rules (dispatcher.service.wire.read_frame: `id` a string or an integer, text frames).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, fields
from http import HTTPStatus
from typing import Any

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from dispatcher import net, websocket
from dispatcher.aio import Background, to_deferred, to_future
from dispatcher.domain import events as ev
from dispatcher.domain.errors import DomainError, InvalidValue
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.guard import Throttled
from dispatcher.service import tokens
from dispatcher.service.assignment import Assignment
from dispatcher.service.calls import ANSWERED_AT, Calls, call_task_id
from dispatcher.service.edges import EdgeContext
from dispatcher.service.ports import EdgeReactor
from dispatcher.service.queries import Queries
from dispatcher.service.sessions import Sessions
from dispatcher.service.wire import Incidents

from . import messages as m
from .cti_callbacks import CtiCallbacks
from .instructions import Instructions

log = logging.getLogger(__name__)

DEFAULT_CTI_PORT = 8090
DEFAULT_ROUTE_TIMEOUT = 30.0  # seconds from `route` to `call.answered`, then route_failed
# A connection that lets this many frames pile up is closed (1008): it cannot follow.
MAX_PENDING_FRAMES = 1000
SOURCE = "cti"  # Calls' source of the calls reported here
# Attributes the dispatcher sets on a CTI call's task; a PBX cannot override them.
INTEGRATION_ATTRIBUTE = "integration"
TO_ATTRIBUTE = "to"
RESERVED_ATTRIBUTES = frozenset({"call_id", "caller", "source", INTEGRATION_ATTRIBUTE,
                                 TO_ATTRIBUTE})
# Characters ignored when matching a dialled number against `numbers`.
NUMBER_PUNCTUATION = str.maketrans("", "", " -().")
# The HTTP status of each error code (POST /cti/events).
HTTP_STATUS = {
    m.BAD_MESSAGE: HTTPStatus.BAD_REQUEST, m.UNKNOWN_TYPE: HTTPStatus.BAD_REQUEST,
    m.FORBIDDEN: HTTPStatus.FORBIDDEN, m.UNKNOWN_CALL: HTTPStatus.NOT_FOUND,
    m.UNKNOWN_EXTENSION: HTTPStatus.NOT_FOUND, "unknown_queue": HTTPStatus.NOT_FOUND,
    "unknown_agent": HTTPStatus.NOT_FOUND, "offer_not_current": HTTPStatus.CONFLICT,
    "illegal_transition": HTTPStatus.CONFLICT, "not_eligible": HTTPStatus.CONFLICT,
    "invalid_value": HTTPStatus.UNPROCESSABLE_ENTITY, m.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}
JSON_TYPE = b"application/json"


@dataclass(frozen=True)
class CtiSettings:
    """The CTI's settings. In the phone edge's `[phone]` section they are the `cti_*` fields
    (`CtiSettings.from_phone`); the token settings mirror the console's, and their defaults are
    the console's, so `switchboard token --agent pbx1 --role integration` makes a PBX token."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = DEFAULT_CTI_PORT  # the WebSocket server; 0: any free port
    # RFC 8725: the algorithm is pinned here, never taken from the token's header.
    jwt_algorithm: str = "HS256"
    jwt_secret_file: str = ""  # HS256: the shared secret
    jwt_public_key_file: str = ""  # RS256: PEM public key
    # HS256 without a secret file: the secret the runtime keeps in the database, the one the
    # console and `switchboard token` use (never unsigned tokens).
    issuer: str = "switchboard"
    audience: str = "switchboard-console"
    leeway_seconds: int = tokens.DEFAULT_LEEWAY_SECONDS
    # The longest life (`exp - iat`) of a PBX's token: such tokens sit in a PBX's configuration,
    # hence long; revoke one by its `jti` (`switchboard token revoke`).
    max_token_lifetime_seconds: int = tokens.MAX_INTEGRATION_LIFETIME_SECONDS
    # The dialled number (`to` of call.arrived) -> queue: "+3225550000=support,0800=sales".
    numbers: str = ""
    default_queue: str = ""  # when neither `queue` nor `to` names one; empty: refuse the call
    # Browser pages allowed to open a socket (comma-separated); none by default: a PBX sends no
    # Origin, and a request with an Origin not listed is refused (403).
    allowed_origins: str = ""
    max_frame_bytes: int = 64 * 1024  # also the largest POST body
    # A `route` the PBX has not answered (call.answered) within this many seconds is failed
    # as a `route.failed {no_answer}` would be: the caller does not stay on hold for ever.
    route_timeout: float = DEFAULT_ROUTE_TIMEOUT
    # Make agents without a reachable phone unavailable for phone tasks at start (the phone
    # edge does it itself when it runs the CTI; see Calls.require_devices).
    require_devices: bool = True

    @classmethod
    def from_phone(cls, phone_settings: Any, prefix: str = "cti_") -> CtiSettings:
        """The `cti_*` fields of the phone edge's settings (those it has), as CtiSettings."""
        values = {}
        for f in fields(cls):
            name = prefix + f.name
            if hasattr(phone_settings, name):
                values[f.name] = getattr(phone_settings, name)
        return cls(**values)

    def origins(self) -> frozenset[str]:
        return frozenset(o.strip().rstrip("/") for o in self.allowed_origins.split(",")
                         if o.strip())

    def number_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in self.numbers.split(","))):
            number, sep, queue = item.partition("=")
            if not sep or not normal_number(number) or not queue.strip():
                raise InvalidValue(f"phone.cti_numbers: expected number=queue, got {item!r}")
            out[normal_number(number)] = queue.strip()
        return out


def normal_number(number: str) -> str:
    return number.strip().translate(NUMBER_PUNCTUATION).lower()


class Refused(Exception):
    """A PBX request that cannot be done: an error code (wire API) and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CallRef:
    call_id: str
    task_id: str
    integration: str


class Link:
    """One PBX WebSocket: frames are queued and one writer task sends them in order."""

    def __init__(self, ws: Any, sub: str, background: Background) -> None:
        self.ws, self.sub = ws, sub
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._writer = background.start(self._write(), name=f"cti-writer-{sub}")
        self._closing: Any = None

    def push(self, frame: dict[str, Any]) -> None:
        if self._queue.qsize() >= MAX_PENDING_FRAMES:
            log.warning("cti: %s cannot keep up; closing", self.sub)
            self._closing = asyncio.ensure_future(self.ws.close(m.CLOSE_TOO_SLOW,
                                                                "too many pending frames"))
            return
        self._queue.put_nowait(frame)

    async def _write(self) -> None:
        while True:
            frame = await self._queue.get()
            try:
                await self.ws.send(m.dumps(frame))
            except asyncio.CancelledError:
                raise
            except ConnectionClosed:
                return
            except Exception:
                log.exception("cti: could not send to %s", self.sub)

    def stop(self) -> None:
        self._writer.cancel()


class Cti:
    """The CTI of one dispatcher: its WebSocket server, its HTTP resource, and the outcome
    listener that turns offers and their endings into `offer`/`route`/`cancel_route`."""

    def __init__(self, settings: CtiSettings, *, reactor: EdgeReactor, calls: Calls,
                 queries: Queries, sessions: Sessions, assignment: Assignment,
                 site_root: Resource, token_secret: bytes | None = None) -> None:
        self.settings = settings
        self.reactor = reactor
        self.calls = calls
        self.queries = queries
        self.sessions = sessions
        self.assignment = assignment
        self.site_root = site_root
        self.token_secret = token_secret  # the database's HS256 secret, when the runtime has one
        self.numbers = settings.number_map()
        self.origins = settings.origins()
        self.verifier: tokens.Verifier | None = None
        self.background = Background()
        self.links: dict[str, set[Link]] = {}  # integration (token subject) -> connections
        self._admissions: websocket.Admissions[tokens.Claims] = websocket.Admissions()
        self._tokens: dict[Link, tokens.Claims] = {}  # each open link's token (revocations)
        self.refusals = Throttled(log)
        self.incidents = Incidents(log)  # unexpected failures: an id for the PBX and the log
        self._refs: dict[str, CallRef] = {}  # task id -> the CTI call
        self.instructions = Instructions()  # what each PBX is told again when it connects
        self.callback_calls = CtiCallbacks(self)  # `callback` instructions (cti_callbacks.py)
        self._routed: set[str] = set()  # task ids routed to an agent and not over yet
        self._route_timers: dict[str, Any] = {}  # task id -> its route's timeout (IDelayedCall)
        self._failing: dict[str, str] = {}  # task id -> why its route is being failed
        self._server: Any = None
        self._listening = False
        self.port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Deferred[None]:
        keys = tokens.load_keys(
            self.settings.jwt_algorithm, secret_file=self.settings.jwt_secret_file,
            public_key_file=self.settings.jwt_public_key_file,
            stored=self.token_secret, label="cti")
        self.verifier = tokens.Verifier(
            keys, self.settings.issuer, self.settings.audience, self.settings.leeway_seconds,
            max_integration_lifetime=self.settings.max_token_lifetime_seconds)
        if self._revoked not in self.verifier.revoked.listeners:
            self.verifier.revoked.listeners.append(self._revoked)
        if not self._listening:
            self.assignment.listen(self.on_outcome)
            self.assignment.listen(self.callback_calls.on_outcome)
            self._listening = True
        mount(self.site_root, self)
        return to_deferred(self._start())

    async def _start(self) -> None:
        if self.settings.require_devices:
            await to_future(self.calls.require_devices())
        self._recover_routes()
        self._server = await websocket.listen(
            self._connection, name="cti", host=self.settings.host, port=self.settings.port,
            max_frame_bytes=self.settings.max_frame_bytes, subprotocol=m.SUBPROTOCOL,
            handshake=self._handshake, logger=log)
        self.port = websocket.bound_port(self._server)
        log.info("cti: WebSocket server on ws://%s:%d/", self.settings.host, self.port)

    def _recover_routes(self) -> None:
        """After a restart: the CTI calls assigned to an agent get their `route` again when
        their integration connects (whether the PBX connected them before is not known here:
        it ignores a route for a call already connected)."""
        for agent_id in self.queries.agent_presence():
            for task in self.queries.held(agent_id):
                ref = self._ref(task.id)
                if ref is not None and task.state is TaskState.ASSIGNED:
                    self._routed.add(task.id)
                    self._issue(ref, {"type": m.ROUTE, "call_id": ref.call_id,
                                      "task_id": task.id, **self._where(agent_id)})
                    if task.attributes.get(ANSWERED_AT) is None:
                        self._arm(ref.task_id, agent_id)

    def stop(self) -> Deferred[None]:
        return to_deferred(self._stop())

    async def _stop(self) -> None:
        if self.verifier is not None and self._revoked in self.verifier.revoked.listeners:
            self.verifier.revoked.listeners.remove(self._revoked)
        self.verifier = None  # POST /cti/events answers 503 from now on
        server, self._server = self._server, None
        for task_id in list(self._route_timers):
            self._disarm(task_id)
        await websocket.stop(server)
        await self.background.stop()

    def _revoked(self, revocations: tokens.Revocations) -> None:
        """Close the links whose token was just revoked (`switchboard token revoke`)."""
        for link, claims in list(self._tokens.items()):
            if tokens.is_revoked(revocations, claims):
                log.info("cti: closing a link of %s: token revoked", claims.sub)
                self._tokens.pop(link, None)
                link.close_revoked = asyncio.ensure_future(
                    link.ws.close(CLOSE_TOKEN_REVOKED, websocket.TOKEN_REVOKED_REASON))

    # ------------------------------------------------------------------ authentication

    def authenticate(self, token: str | None, peer: str = "unknown") -> tokens.Claims:
        """The claims of an integration's token: `_Unauthorized` (401) for none or an invalid
        one, `_NotAnIntegration` (403) for another role's."""
        if not token or self.verifier is None:
            raise _Unauthorized("a bearer token is required")
        try:
            claims = self.verifier.verify(token)
        except tokens.TokenRefused as exc:
            self.refusals.warning((peer, "token"), time.monotonic(),
                                  "cti: refused a token from %s: %s", peer, exc)
            raise _Unauthorized(str(exc)) from None
        if claims.role != tokens.INTEGRATION:
            self.refusals.warning((claims.sub, "role"), time.monotonic(),
                                  "cti: refused a token of role %s (subject %s, from %s): "
                                  "integrations only", claims.role,
                                  claims.sub[:m.MAX_FIELD_CHARS], peer)
            raise _NotAnIntegration(f"role {claims.role} may not use the CTI")
        return claims

    def origin_allowed(self, origin: str | None) -> bool:
        return origin is None or origin.rstrip("/") in self.origins

    def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        origin = request.headers.get("Origin")
        if not self.origin_allowed(origin):
            return websocket.foreign_origin(connection, origin, self.refusals, "cti")
        try:
            claims = self.authenticate(token_from(request), websocket.peer(connection))
        except _Unauthorized as exc:
            return websocket.unauthorized(connection, str(exc))
        except _NotAnIntegration as exc:
            return websocket.forbidden(connection, f"forbidden: {exc}")
        self._admissions.admit(connection, claims)
        return None

    # ------------------------------------------------------------------ one connection

    async def _connection(self, ws: ServerConnection) -> None:
        claims = await self._admissions.take(ws)
        if claims is None:
            return
        link = Link(ws, claims.sub, self.background)
        self.links.setdefault(claims.sub, set()).add(link)
        self._tokens[link] = claims
        log.info("cti: integration %s connected", claims.sub)
        link.push({"type": m.WELCOME, "v": m.PROTOCOL_VERSION, "integration": claims.sub,
                   "server_time": self.reactor.seconds()})
        for frame in self.instructions.due(claims.sub):  # what the PBX may have missed
            link.push(frame)
        try:
            async for raw in websocket.frames(ws):
                link.push(await self.answer(claims.sub, raw))
        finally:
            link.stop()
            self._tokens.pop(link, None)
            mine = self.links.get(claims.sub)
            if mine is not None:
                mine.discard(link)
                if not mine:
                    del self.links[claims.sub]
            log.info("cti: integration %s disconnected", claims.sub)

    async def answer(self, sub: str, raw: str | bytes, *, text_only: bool = True
                     ) -> dict[str, Any]:
        """The answer to one PBX frame (`ok` after the commit, or `error`); never raises.
        `text_only`: a WebSocket frame (binary frames refused); False for an HTTP body."""
        rid = None
        try:
            msg = m.parse(raw, text_only=text_only)
            rid = msg.get("id")
            return await self.event(sub, msg)
        except m.BadMessage as exc:
            self.refusals.warning((sub, "bad_message"), time.monotonic(),
                                  "cti: bad message from %s: %s", sub, exc)
            return m.error(exc.code, str(exc), rid if exc.rid is None else exc.rid)
        except Refused as exc:
            self.refusals.warning((sub, "refused"), time.monotonic(),
                                  "cti: refused a request of %s: %s", sub, exc)
            return m.error(exc.code, str(exc), rid)
        except DomainError as exc:
            log.info("cti: %s: %s", exc.code, exc)
            return m.error(exc.code, str(exc), rid)
        except Exception as exc:  # noqa: BLE001 - the PBX gets an id, the log the trace
            incident = self.incidents.record(exc, time.monotonic(),
                                             "cti: a request of %s failed", sub)
            return {**m.error(m.INTERNAL, f"internal error (incident {incident})", rid),
                    "incident": incident}

    # ------------------------------------------------------------------ PBX events

    async def event(self, sub: str, msg: dict[str, Any]) -> dict[str, Any]:
        kind, rid = msg["type"], msg.get("id")
        if kind == m.PING:
            return {"type": m.PONG, "re": rid}
        if kind == m.CALL_ARRIVED:
            return await self._arrived(sub, msg, rid)
        if kind == m.CALL_ANSWERED:
            return await self._answered(sub, msg, rid)
        if kind == m.CALL_ENDED:
            call_id = self._own_call(sub, msg)
            by = m.choice(msg, "by", m.ENDED_BY, m.DEFAULT_ENDED_BY)
            await to_future(self.calls.ended(call_id, by))
            self._over_at_pbx(sub, call_id)
            return m.ok(rid, call_id=call_id)
        if kind == m.CALL_ABANDONED:
            call_id = self._own_call(sub, msg)
            reason = m.text(msg, "reason", False, m.MAX_FIELD_CHARS, m.DEFAULT_ABANDON_REASON)
            await to_future(self.calls.abandoned(call_id, reason or m.DEFAULT_ABANDON_REASON))
            self._over_at_pbx(sub, call_id)
            return m.ok(rid, call_id=call_id)
        if kind == m.ROUTE_FAILED:
            return await self._route_failed(sub, msg, rid)
        if kind in m.CALLBACK_EVENTS:
            return await self.callback_calls.event(sub, msg, rid)
        return await self._device(msg, rid)  # m.parse admits no other type

    async def _arrived(self, sub: str, msg: dict[str, Any], rid: Any) -> dict[str, Any]:
        call_id = m.text(msg, "call_id", limit=m.MAX_CALL_ID_CHARS)
        caller = m.text(msg, "from", False, m.MAX_NUMBER_CHARS, "") or ""
        to = m.text(msg, "to", False, m.MAX_NUMBER_CHARS, "") or ""
        queue = m.text(msg, "queue", False) or self.numbers.get(normal_number(to)) \
            or self.settings.default_queue
        priority = m.integer(msg, "priority")
        skills = m.skills(msg)
        attributes = {k: v for k, v in m.attributes(msg).items()
                      if k not in RESERVED_ATTRIBUTES}
        known = self.calls.task_id(call_id)
        if known is not None:  # a repeat: the call keeps its queue
            self._check_owner(sub, known, call_id)
            held = self.queries.task(known)
            queue = queue or (held.queue if held is not None else "")
        if not queue:
            raise Refused("unknown_queue", f"no queue for the number {to!r}: give `queue` or "
                          "map the number in [phone] cti_numbers")
        attributes[INTEGRATION_ATTRIBUTE] = sub
        if to:
            attributes[TO_ATTRIBUTE] = to
        task = await to_future(self.calls.arrived(call_id, caller, queue, source=SOURCE,
                                                  attributes=attributes, priority=priority,
                                                  skills=skills))
        if task.attributes.get(INTEGRATION_ATTRIBUTE) != sub:
            raise Refused(m.FORBIDDEN, f"call {call_id} was reported by another integration")
        current = self.queries.task(task.id)
        return m.ok(rid, call_id=call_id, task_id=task.id, queue=task.queue,
                    state=(current or task).state.value)

    async def _answered(self, sub: str, msg: dict[str, Any], rid: Any) -> dict[str, Any]:
        call_id = self._own_call(sub, msg, must_exist=True)
        extension = m.text(msg, "extension", False, m.MAX_NUMBER_CHARS)
        agent_id = m.text(msg, "agent_id", False)
        if extension is not None:
            by_extension = self.calls.agent_by_extension(extension)
            if by_extension is None:
                raise Refused(m.UNKNOWN_EXTENSION, f"no agent has the extension {extension}")
            if agent_id is not None and agent_id != by_extension:
                raise m.BadMessage(f"extension {extension} is not agent {agent_id}'s")
            agent_id = by_extension
        if agent_id is None:  # the agent the call was routed (or is being offered) to
            task = self.queries.task(self.calls.task_id(call_id) or "")
            agent_id = task.agent_id if task is not None else None
            if agent_id is None:
                raise Refused("offer_not_current", f"call {call_id} is with no agent: "
                              "name the `extension` that answered")
        await to_future(self.calls.answered(call_id, agent_id))
        return m.ok(rid, call_id=call_id, agent_id=agent_id)

    async def _route_failed(self, sub: str, msg: dict[str, Any], rid: Any) -> dict[str, Any]:
        """The extension did not take the routed call (no answer, busy, unreachable): the call
        goes back to its queue with its age, never back to that agent (a transfer to its own
        queue), and the PBX gets `cancel_route {route_failed}` then the next offer."""
        call_id = self._own_call(sub, msg, must_exist=True)
        reason = m.text(msg, "reason", False, m.MAX_FIELD_CHARS, m.DEFAULT_ROUTE_FAILURE)
        task = self.queries.task(self.calls.task_id(call_id) or "")
        if task is None or task.state is not TaskState.ASSIGNED or task.agent_id is None:
            raise Refused("offer_not_current", f"call {call_id} is not routed to an agent")
        agent_id = task.agent_id  # the task changes hands below
        log.info("cti: %s could not connect %s to %s: %s", sub, call_id, agent_id, reason)
        await to_future(self._fail_route(task.id, task.queue, reason or m.DEFAULT_ROUTE_FAILURE,
                                         m.INTEGRATION_ACTOR_PREFIX + sub))
        return m.ok(rid, call_id=call_id, agent_id=agent_id)

    def _fail_route(self, task_id: str, queue: str, reason: str, actor: str
                    ) -> Deferred[Any]:
        """Back to its own queue (a transfer: original age kept, never again to that agent);
        the outcome's `cancel_route` says `route_failed` with `reason` as its detail."""
        self._failing[task_id] = reason
        d = self.sessions.transfer(task_id, queue=queue, actor=actor)

        def forget(result: Any) -> Any:
            self._failing.pop(task_id, None)
            return result

        return d.addBoth(forget)

    async def _device(self, msg: dict[str, Any], rid: Any) -> dict[str, Any]:
        extension = m.text(msg, "extension", limit=m.MAX_NUMBER_CHARS)
        state = m.choice(msg, "state", m.DEVICE_STATES)
        agent_id = self.calls.agent_by_extension(extension)
        if agent_id is None:
            raise Refused(m.UNKNOWN_EXTENSION, f"no agent has the extension {extension}")
        if state == m.RINGING and self._rings_ours(agent_id):
            return m.ok(rid, extension=extension, agent_id=agent_id, state=state)
        if state == m.UNAVAILABLE:
            d = self.calls.device(agent_id, reachable=False)
        else:
            d = self.calls.device(agent_id, reachable=True,
                                  engaged=(state in m.ENGAGED_STATES))
        await to_future(d)
        return m.ok(rid, extension=extension, agent_id=agent_id, state=state)

    def _rings_ours(self, agent_id: str) -> bool:
        """Whether the agent's phone may ring with one of our calls: a CTI call offered to them
        (a PBX that rings on `offer`) or routed to them and not answered yet. Their `ringing`
        is then that call's, which changes nothing (as `busy` it would withdraw it)."""
        offer = self.queries.pending_offer(agent_id)
        if offer is not None and self._ref(offer.task_id) is not None:
            return True
        return any(t.state is TaskState.ASSIGNED and t.attributes.get(ANSWERED_AT) is None
                   and self._ref(t.id) is not None for t in self.queries.held(agent_id))

    def _own_call(self, sub: str, msg: dict[str, Any], must_exist: bool = False) -> str:
        """The message's call id, checked to belong to this integration. A call we do not
        know (never reported, or over and forgotten) is `unknown_call` when `must_exist`;
        otherwise the event is acknowledged and changes nothing (ends are idempotent)."""
        call_id = m.text(msg, "call_id", limit=m.MAX_CALL_ID_CHARS)
        task_id = self.calls.task_id(call_id)
        if task_id is None:
            if must_exist:
                raise Refused(m.UNKNOWN_CALL, f"no open call {call_id}")
            return call_id
        self._check_owner(sub, task_id, call_id)
        return call_id

    def _check_owner(self, sub: str, task_id: str, call_id: str) -> None:
        task = self.queries.task(task_id)
        if task is None:
            return
        if task.attributes.get("source") != SOURCE or \
                task.attributes.get(INTEGRATION_ATTRIBUTE) != sub:
            raise Refused(m.FORBIDDEN, f"call {call_id} was not reported by {sub}")

    # ------------------------------------------------------------------ dispatcher -> PBX

    def _ref(self, task_id: str | None, outcome: Any = None) -> CallRef | None:
        """The call behind `task_id`, if a PBX reported it; `outcome`'s own copy of the task
        serves when the router no longer holds it (it ended in that outcome)."""
        if task_id is None:
            return None
        ref = self._refs.get(task_id)
        if ref is None:
            task = self.queries.task(task_id)
            if task is None and outcome is not None:
                task = outcome.tasks.get(task_id)
            if task is None or task.channel is not Channel.PHONE \
                    or task.attributes.get("source") != SOURCE:
                return None
            ref = CallRef(task.attributes.get("call_id", ""), task_id,
                          task.attributes.get(INTEGRATION_ATTRIBUTE, ""))
            self._refs[task_id] = ref
        return ref

    def _where(self, agent_id: str | None) -> dict[str, Any]:
        """How the PBX reaches the agent: their extension, and a registered SIP contact."""
        account = self.calls.account_of(agent_id) if agent_id else None
        binding = self.calls.binding(agent_id) if agent_id else None
        return {"agent_id": agent_id,
                "extension": account.extension if account is not None else None,
                "contact": binding.contact if binding is not None else None}

    def _send(self, ref: CallRef, frame: dict[str, Any]) -> None:
        for link in list(self.links.get(ref.integration, ())):
            link.push(frame)

    def _issue(self, ref: CallRef, frame: dict[str, Any]) -> None:
        """An instruction for the PBX: sent to its live links, and kept as the call's latest
        until the PBX acts on it (sent again when the integration connects)."""
        dropped = self.instructions.issued(ref.integration, ref.task_id, frame)
        if dropped is not None:
            self.refusals.warning((ref.integration, "replay"), time.monotonic(),
                                  "cti: %s has more than %d calls with instructions pending; "
                                  "no longer keeping the %s of call %s", ref.integration,
                                  self.instructions.limit, dropped["type"],
                                  dropped.get("call_id"))
        self._send(ref, frame)

    def _over_at_pbx(self, sub: str, call_id: str) -> None:
        """The PBX ended the call: nothing it was told of it needs saying again (also for a
        call over already, e.g. cancelled by a supervisor, whose `cancel_route` was kept)."""
        self.instructions.settled(call_task_id(call_id), integration=sub)

    def on_outcome(self, outcome: Any) -> None:
        """After each committed outcome: tell the PBX that reported a call what became of it."""
        answered = {e.task_id for e in outcome.events if e.kind == ev.CALL_ANSWERED}
        for e in outcome.events:
            ref = self._ref(e.task_id, outcome)
            if ref is None:
                continue
            kind = e.kind
            if kind == ev.TASK_OFFERED:
                self._issue(ref, {"type": m.OFFER, "call_id": ref.call_id,
                                  "task_id": ref.task_id, "offer_id": e.data.get("offer_id"),
                                  "expires_at": e.data.get("expires_at"),
                                  **self._where(e.agent_id)})
            elif kind in (ev.OFFER_EXPIRED, ev.OFFER_REJECTED, ev.OFFER_WITHDRAWN):
                reason = {ev.OFFER_EXPIRED: m.EXPIRED, ev.OFFER_REJECTED: m.REJECTED,
                          ev.OFFER_WITHDRAWN: m.WITHDRAWN}[kind]
                self._cancel(ref, e, reason, offer_id=e.data.get("offer_id"))
            elif kind == ev.TASK_ASSIGNED:
                self._routed.add(ref.task_id)
                if ref.task_id in answered:  # the PBX's own answer accepted the offer
                    self.instructions.settled(ref.task_id)
                    continue
                self._issue(ref, {"type": m.ROUTE, "call_id": ref.call_id,
                                  "task_id": ref.task_id, **self._where(e.agent_id)})
                self._arm(ref.task_id, e.agent_id)
            elif kind == ev.CALL_ANSWERED:
                self._disarm(ref.task_id)
                self.instructions.settled(ref.task_id)
            elif kind in (ev.TASK_REQUEUED, ev.TASK_TRANSFERRED, ev.TASK_CANCELLED):
                self._moved(ref, e)
            if kind in (ev.TASK_WRAP_UP, ev.TASK_COMPLETED, ev.TASK_CANCELLED,
                        ev.TASK_ABANDONED):
                self._disarm(ref.task_id)
                if kind != ev.TASK_CANCELLED:  # the PBX ended it: nothing left to tell
                    self.instructions.settled(ref.task_id)
                self._routed.discard(ref.task_id)
                if kind != ev.TASK_WRAP_UP:
                    self._refs.pop(ref.task_id, None)

    def _moved(self, ref: CallRef, e: Any) -> None:
        """Requeued, transferred or cancelled: a routed call is taken back from its agent; a
        call never routed that is cancelled will never be (the PBX ends it, or sends it where
        its dial plan says)."""
        if ref.task_id in self._routed:
            self._taken_back(ref, e)
        elif e.kind == ev.TASK_CANCELLED:
            self._cancel(ref, e, m.CANCELLED)

    def _taken_back(self, ref: CallRef, e: Any) -> None:
        """A routed call was taken from its agent: requeued, transferred (a failed route is a
        transfer to its own queue), cancelled."""
        reason = {ev.TASK_REQUEUED: m.REQUEUED, ev.TASK_TRANSFERRED: m.TRANSFERRED,
                  ev.TASK_CANCELLED: m.CANCELLED}[e.kind]
        detail = self._failing.pop(ref.task_id, None) if e.kind == ev.TASK_TRANSFERRED else None
        if detail is not None or (e.kind == ev.TASK_TRANSFERRED and
                                  e.actor.startswith(m.INTEGRATION_ACTOR_PREFIX)):
            reason = m.ROUTE_FAILED_REASON
        self._disarm(ref.task_id)
        self._cancel(ref, e, reason, detail=detail)
        self._routed.discard(ref.task_id)

    def _cancel(self, ref: CallRef, e: Any, reason: str, offer_id: str | None = None,
                detail: str | None = None) -> None:
        frame = {"type": m.CANCEL_ROUTE, "call_id": ref.call_id, "task_id": ref.task_id,
                 "reason": reason, **self._where(e.agent_id)}
        if offer_id is not None:
            frame["offer_id"] = offer_id
        detail = detail or e.data.get("reason")
        if detail:
            frame["detail"] = detail
        self._issue(ref, frame)

    # ------------------------------------------------------------------ route timeouts

    def _arm(self, task_id: str, agent_id: str | None) -> None:
        """`route_timeout` seconds for the PBX to report the routed call answered."""
        self._disarm(task_id)
        self._route_timers[task_id] = self.reactor.callLater(
            self.settings.route_timeout, self._no_answer, task_id, agent_id)

    def _disarm(self, task_id: str) -> None:
        timer = self._route_timers.pop(task_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _no_answer(self, task_id: str, agent_id: str | None) -> None:
        """The route's time is up: still routed to that agent and never answered, it fails
        as a PBX's `route.failed {no_answer}` would."""
        self._route_timers.pop(task_id, None)
        task = self.queries.task(task_id)
        ref = self._ref(task_id)
        if ref is None or task is None or task.state is not TaskState.ASSIGNED or \
                task.agent_id != agent_id or task.attributes.get(ANSWERED_AT) is not None:
            return
        log.warning("cti: no answer within %g s to the route of call %s (%s) to %s's extension:"
                    " back to queue %s", self.settings.route_timeout, ref.call_id,
                    ref.integration, agent_id, task.queue)

        def failed(failure: Any) -> None:  # the task moved meanwhile (answered, ended...)
            log.info("cti: could not take call %s back from %s: %s", ref.call_id, agent_id,
                     failure.getErrorMessage())

        self._fail_route(task_id, task.queue, m.DEFAULT_ROUTE_FAILURE,
                         ev.SYSTEM).addErrback(failed)


class _Unauthorized(Exception):
    pass


# A link whose token is revoked is closed with this code (as the console's sessions).
CLOSE_TOKEN_REVOKED = websocket.CLOSE_TOKEN_REVOKED


class _NotAnIntegration(Exception):
    pass


def token_from(request: Request) -> str | None:
    """The bearer token of a handshake: `Authorization: Bearer`, the `bearer.<jwt>`
    subprotocol, else `?access_token=`."""
    return websocket.token_from(request, authorization=True)


# ---------------------------------------------------------------------- HTTP one-shot events


class Events(Resource):
    """`POST /cti/events`: one PBX event per request, JSON in and out, `Authorization: Bearer`.
    200 with the `ok` frame after the commit; an `error` frame with a 4xx/5xx status otherwise
    (HTTP_STATUS); 401 / 403 for tokens as on the WebSocket; 413 above `max_frame_bytes`; 415
    for a body that is not application/json; 503 once the CTI has stopped. Other methods: 405."""

    isLeaf = True

    def __init__(self, cti: Cti) -> None:
        super().__init__()
        self.cti = cti

    @property
    def max_body_bytes(self) -> int:
        """The site refuses a larger body (413) before reading it (dispatcher/runtime/http)."""
        return self.cti.settings.max_frame_bytes

    @staticmethod
    def too_large(limit: int, request: Any = None) -> tuple[bytes, bytes]:
        """The site's 413 for a larger body, as this API's error frame."""
        return JSON_TYPE, json.dumps(m.error(m.BAD_MESSAGE, f"at most {limit} bytes")).encode()

    def render_POST(self, request) -> bytes | int:
        request.setHeader(b"content-type", JSON_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        if self.cti.verifier is None:
            return self._fail(request, HTTPStatus.SERVICE_UNAVAILABLE, m.NOT_RUNNING,
                              "the CTI is not running")
        if not self.cti.origin_allowed(_header(request, b"origin")):
            return self._fail(request, HTTPStatus.FORBIDDEN, m.FORBIDDEN, "origin not allowed")
        token = websocket.bearer(_header(request, b"authorization"))
        try:
            claims = self.cti.authenticate(token, _client(request))
        except _Unauthorized as exc:
            request.setHeader(b"www-authenticate", b'Bearer error="invalid_token"')
            return self._fail(request, HTTPStatus.UNAUTHORIZED, m.UNAUTHORIZED, str(exc))
        except _NotAnIntegration as exc:
            return self._fail(request, HTTPStatus.FORBIDDEN, m.FORBIDDEN, str(exc))
        ctype = (_header(request, b"content-type") or "").split(";")[0].strip().lower()
        if ctype != JSON_TYPE.decode():
            return self._fail(request, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, m.BAD_MESSAGE,
                              "send application/json")
        limit = self.cti.settings.max_frame_bytes
        body = request.content.read(limit + 1) if request.content is not None else b""
        if len(body) > limit:
            return self._fail(request, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, m.BAD_MESSAGE,
                              f"at most {limit} bytes")
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = Deferred.fromFuture(self.cti.background.start(
            self.cti.answer(claims.sub, body, text_only=False), name="cti-http-event"))

        def respond(frame: dict[str, Any]) -> None:
            if gone:
                return
            if frame["type"] == m.ERROR:
                request.setResponseCode(HTTP_STATUS.get(frame["code"], HTTPStatus.BAD_REQUEST))
            request.write(m.dumps(frame).encode())
            request.finish()

        def failed(failure: Any) -> None:  # `answer` never raises: a bug, or a cancelled task
            incident = self.cti.incidents.record(failure.value, time.monotonic(),
                                                 "cti: an HTTP event of %s failed", claims.sub)
            if not gone and not request.finished:
                request.setResponseCode(HTTPStatus.INTERNAL_SERVER_ERROR)
                request.write(m.dumps({**m.error(m.INTERNAL, "internal error (incident "
                                                 f"{incident})"), "incident": incident}).encode())
                request.finish()

        d.addCallback(respond)
        d.addErrback(failed)
        return NOT_DONE_YET

    @staticmethod
    def _fail(request, status: HTTPStatus, code: str, message: str) -> bytes:
        request.setResponseCode(status)
        return json.dumps(m.error(code, message)).encode()


def _client(request) -> str:
    """An HTTP client's address (host only)."""
    return net.client_host(request)


def _header(request, name: bytes) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def mount(root: Resource | None, cti: Cti) -> None:
    """Hang `POST /cti/events` on the runtime's site (no site: WebSocket only)."""
    if root is None:
        return
    first, second = m.HTTP_EVENTS_PATH
    parent = root.children.get(first)
    if parent is None:
        parent = Resource()
        root.putChild(first, parent)
    parent.putChild(second, Events(cti))


def build_cti(context: EdgeContext, settings: CtiSettings) -> Cti:
    """The CTI alone as an edge (`EdgeSpec(build=build_cti)`); the phone edge builds it too."""
    if context.calls is None:
        raise ValueError("the CTI needs the phone service (EdgeContext.calls)")
    return Cti(settings, reactor=context.reactor, calls=context.calls, queries=context.queries,
               sessions=context.sessions, assignment=context.assignment,
               site_root=context.site_root, token_secret=context.token_secret)
