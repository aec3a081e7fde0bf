"""The console's WebSocket server (`websockets` on the asyncio loop the reactor runs on).

What it promises, per connection:
- The handshake is refused before any WebSocket exists: a foreign `Origin` with 403, a missing
  or bad token with 401 (`WWW-Authenticate: Bearer`); the token comes from the subprotocol
  `bearer.<jwt>` (browsers) or the `access_token` query parameter, and is never logged.
- Frames above `max_frame_bytes` close the socket with 1009; `compression=None`.
- A token revoked while its session is open (`switchboard token revoke`, a disabled account, a
  new password: dispatcher/service/tokens.py) closes the session with 4007 within the
  revocation poll interval; role `integration` is served queue snapshots only and reads no
  customer (`History.view_for` decides).
- The hello applies the accounts' rule (`Accounts.admit`): a supervisor token needs an enabled
  supervisor account, a disabled account's token is refused (close 4005 / 4006); an agent
  token needs an agent the router knows (4003).
- Each request is translated into one service call; its answer (`ok`/`error` with the request's
  `id`) is sent after the service's Deferred fired, i.e. after the commit. Errors carry a code
  and a message, never a stack trace. Acting on someone else's offer or task is `forbidden`
  (and logged). Refusals (origin, token, forbidden, hello) are logged at most once per
  guard.LOG_INTERVAL_SECONDS per client and kind; an unexpected failure is `internal` with an
  `incident` id, which is in its one log line (dispatcher.service.wire.Incidents).
- The WebSocket server is set up as the CTI's (dispatcher/websocket.py) and a frame is read by
  the CTI's rules (dispatcher.service.wire.read_frame: `id` a string or an integer, text frames).
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from dispatcher import websocket
from dispatcher.aio import to_future
from dispatcher.domain.errors import DomainError, Forbidden
from dispatcher.domain.tasks import Channel
from dispatcher.guard import Throttled
from dispatcher.service.accounts import AccountDisabled, UnknownAccount
from dispatcher.service.backoffice import BackOffice, Caller
from dispatcher.service.review import held_by
from dispatcher.service.tokens import Revocations, is_revoked
from dispatcher.service.wire import Incidents

from . import messages as m
from .answers import AnswerRequests
from .auth import Claims, TokenRefused, TokenRevoked, Verifier
from .collaboration import CollaborationRequests
from .config import ConsoleSettings
from .conversation import ConversationRequests
from .customers import CustomerRequests
from .desk import DeskRequests
from .session import Desks, Session
from .supervision import SupervisionRequests

log = logging.getLogger(__name__)

MAX_NOTES_CHARS = 4000
# A session whose token is revoked (`switchboard token revoke`, a disabled account, a new
# password) is closed with this code (docs/console-protocol.md), as a CTI link is.
CLOSE_TOKEN_REVOKED = websocket.CLOSE_TOKEN_REVOKED
TOKEN_REVOKED_REASON = websocket.TOKEN_REVOKED_REASON


def token_from(request: Request) -> str | None:
    """The bearer token of a handshake: `bearer.<jwt>` subprotocol, else `?access_token=`
    (no `Authorization` header: browsers cannot set one)."""
    return websocket.token_from(request)


class ConsoleServer:
    def __init__(self, settings: ConsoleSettings, verifier: Verifier, desks: Desks,
                 sessions: Any, history: Any, accounts: Any = None) -> None:
        self.settings = settings
        # dispatcher.service.accounts.Accounts; None: no accounts, supervisor tokens refused
        self.accounts = accounts
        self.verifier = verifier
        self.desks = desks
        self.sessions = sessions
        self.history = history
        self._admissions: websocket.Admissions[Claims] = websocket.Admissions()
        # Handshakes whose token was revoked with its account disabled: the hello refuses them
        # as `account_disabled`, like a token not yet revoked.
        self._disabled: set[int] = set()
        self._open: dict[Session, Claims] = {}  # each open session's token, for revocations
        self.refusals = Throttled(log)
        self.incidents = Incidents(log)  # unexpected failures: an id for the client and the log
        self._server: Any = None
        self.port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        revoked = getattr(self.verifier, "revoked", None)
        if revoked is not None:
            revoked.listeners.append(self._revoked)
        self._server = await websocket.listen(
            self._connection, name="console", host=self.settings.host,
            port=self.settings.port, max_frame_bytes=self.settings.max_frame_bytes,
            subprotocol=m.SUBPROTOCOL, handshake=self._handshake, logger=log)
        self.port = websocket.bound_port(self._server)
        log.info("console: WebSocket server on ws://%s:%d/", self.settings.host, self.port)

    async def stop(self) -> None:
        revoked = getattr(self.verifier, "revoked", None)
        if revoked is not None and self._revoked in revoked.listeners:
            revoked.listeners.remove(self._revoked)
        await websocket.stop(self._server)
        await self.desks.stop()

    # ------------------------------------------------------------------ handshake

    async def _handshake(self, connection: ServerConnection, request: Request
                         ) -> Response | None:
        origin = request.headers.get("Origin")
        if not self.settings.origin_allowed(origin):
            if origin is None:
                return websocket.forbidden(connection, "an Origin is required")
            return websocket.foreign_origin(connection, origin, self.refusals, "console")
        token = token_from(request)
        if not token:
            return websocket.unauthorized(connection, "a bearer token is required")
        try:
            claims = self.verifier.verify(token)
        except TokenRevoked as exc:
            if not await self._account_disabled(exc.claims):
                return self._refused_token(connection, exc)
            # Revoked because the account was disabled: the hello says so (account_disabled).
            claims = exc.claims
            self._disabled.add(id(connection))
        except TokenRefused as exc:
            return self._refused_token(connection, exc)
        self._admissions.admit(connection, claims)
        return None

    async def _account_disabled(self, claims: Claims) -> bool:
        if self.accounts is None:
            return False
        try:
            await self._call(self.accounts.admit(claims.sub, claims.role))
        except AccountDisabled:
            return True
        except Exception:  # noqa: BLE001 - unknown account, a database error: a plain refusal
            return False
        return False

    def _refused_token(self, connection: ServerConnection, exc: TokenRefused) -> Response:
        peer = websocket.peer(connection)
        self.refusals.warning((peer, "token"), time.monotonic(),
                              "console: refused a token from %s: %s", peer, exc)
        return websocket.unauthorized(connection, str(exc))

    # ------------------------------------------------------------------ one connection

    async def _connection(self, ws: ServerConnection) -> None:
        claims = await self._admissions.take(ws)
        if claims is None:
            return
        disabled = id(ws) in self._disabled
        self._disabled.discard(id(ws))
        revoked = getattr(self.verifier, "revoked", None)
        if (not disabled and revoked is not None
                and revoked.revoked(claims)):  # revoked since its handshake
            await ws.close(CLOSE_TOKEN_REVOKED, TOKEN_REVOKED_REASON)
            return
        session = self.desks.open(ws, claims.sub, claims.role)
        self._open[session] = claims
        try:
            async for raw in websocket.frames(ws):
                await self._frame(session, raw)
        finally:
            self._open.pop(session, None)
            self.desks.close(session)

    def _revoked(self, revocations: Revocations) -> None:
        """Close every open session whose token was just revoked (RevocationList listener)."""
        for session, claims in list(self._open.items()):
            if is_revoked(revocations, claims):
                log.info("console: closing the session of %s: token revoked", session.sub)
                self._open.pop(session, None)
                session.close(CLOSE_TOKEN_REVOKED, TOKEN_REVOKED_REASON)

    async def _frame(self, session: Session, raw: str | bytes) -> None:
        rid = None
        try:
            msg = m.parse(raw)
            rid = msg.get("id")
            answer = await self._request(session, msg)
            if answer is not None:
                session.push(answer)
        except m.BadMessage as exc:
            session.push(m.error(exc.code, str(exc), rid if exc.rid is None else exc.rid))
        except Forbidden as exc:
            self.refusals.warning((session.sub, "forbidden"), time.monotonic(),
                                  "console: forbidden: %s (connection of %s)", exc, session.sub)
            session.push(m.error(exc.code, str(exc), rid))
        except DomainError as exc:
            session.push(m.error(exc.code, str(exc), rid))
        except _Closing as exc:
            session.push(m.error(exc.code, str(exc), rid))
            session.close_after_pending(exc.close_code, str(exc))
        except Exception as exc:  # noqa: BLE001 - the client gets an id, the log the trace
            incident = self.incidents.record(exc, time.monotonic(),
                                             "console: a request from %s failed", session.sub)
            session.push({**m.error(m.INTERNAL, f"internal error (incident {incident})", rid),
                          "incident": incident})

    async def _request(  # noqa: C901 - a flat dispatch, one branch per message family
        self, session: Session, msg: dict[str, Any]
    ) -> dict[str, Any] | None:
        kind, rid = msg["type"], msg.get("id")
        if kind == m.PING:
            return {"type": m.PONG, "re": rid}
        if kind == m.HELLO:
            return await self._hello(session, msg)
        if not session.greeted:
            raise m.BadMessage("send hello first")
        if kind in m.AGENT_TYPES:
            if session.agent_id is None:
                raise Forbidden(session.sub, f"{kind}: not an agent")
            return await getattr(self, "_" + kind)(session, msg, rid)
        if kind == m.HISTORY:
            return await self._history(session, msg, rid)
        if kind == m.MERGE:
            return await self._merge(session, msg, rid)
        if kind in m.ANSWER_TYPES:  # the reply box, the library, the review queue
            return await AnswerRequests(self.desks).handle(session, kind, msg, rid)
        if kind in m.COLLABORATION_TYPES:  # notes, consults, reminders, categories, spam
            return await CollaborationRequests(self.desks).handle(session, kind, msg, rid)
        if kind in m.SUPERVISION_TYPES:  # the live state and the balancing actions
            return await SupervisionRequests(self.desks).handle(session, kind, msg, rid)
        if kind in m.CONVERSATION_TYPES:  # a task's thread, notes and files
            return await ConversationRequests(self.desks).handle(session, kind, msg, rid)
        if kind in m.DESK_TYPES:  # more time to wrap up
            return await DeskRequests(self.desks).handle(session, kind, msg, rid)
        if kind in m.CUSTOMER_TYPES:  # supervisors: find and correct customers
            return await CustomerRequests(self.desks).handle(session, kind, msg, rid)
        raise m.BadMessage(f"unknown message type {kind!r}")

    async def _hello(self, session: Session, msg: dict[str, Any]) -> None:
        if session.greeted:
            raise m.BadMessage("hello was already sent")
        version = msg.get("v")
        if version != m.PROTOCOL_VERSION:
            raise _Closing(m.UNSUPPORTED_VERSION,
                           f"this server speaks version {m.PROTOCOL_VERSION}",
                           m.CLOSE_UNSUPPORTED_VERSION)
        await self._admit(session)
        if session.role == "agent" and self.desks.view.agent(session.sub) is None:
            raise _Closing("unknown_agent", f"no agent {session.sub} is configured",
                           m.CLOSE_NOT_AN_AGENT)
        self.desks.greet(session)
        return None

    async def _admit(self, session: Session) -> None:
        """The accounts' rule for this token's holder (the service decides)."""
        try:
            if self.accounts is None:
                if session.role == "supervisor":
                    raise UnknownAccount(session.sub, "supervisor")
                return
            await self._call(self.accounts.admit(session.sub, session.role))
        except (AccountDisabled, UnknownAccount) as exc:
            self.refusals.warning((session.sub, "hello"), time.monotonic(),
                                  "console: refused the hello of %s (%s): %s", session.sub,
                                  session.role, exc.code)
            close = (m.CLOSE_ACCOUNT_DISABLED if isinstance(exc, AccountDisabled)
                     else m.CLOSE_NO_ACCOUNT)
            raise _Closing(exc.code, str(exc), close) from None

    async def _call(self, d: Any) -> Any:
        return await to_future(d)

    async def _done(self, session: Session, d: Any, rid: Any) -> None:
        """Wait for `d`, one of the agent's routing commands (accept, reject, wrap-up, complete,
        pick, transfer), whose `ok` is pushed the moment it is done: right behind the frames of
        its outcome (the assignment's listeners push them first, Desks.on_outcome), in the same
        reactor turn, so that they leave together (Session._send_ready), not the `ok` a turn
        later when this coroutine resumes. A command that fails pushes no `ok`: its error comes
        from `_frame` as for any request."""
        d.addCallback(self._push_ok, session, rid)
        await self._call(d)

    @staticmethod
    def _push_ok(result: Any, session: Session, rid: Any) -> Any:
        session.push(m.ok(rid))
        return result

    # ------------------------------------------------------------------ agent requests

    async def _presence(self, session, msg, rid):
        agent_id = session.agent_id
        status, reason = m.field(msg, "status", False), m.field(msg, "reason", False)
        channels = msg.get("channels")
        if channels is not None:
            if not isinstance(channels, dict) or not all(
                    isinstance(v, bool) and k in {c.value for c in Channel}
                    for k, v in channels.items()):
                raise m.BadMessage('presence: `channels` maps "email"/"phone" to true/false')
            # The service keeps at least one channel on (Sessions.switch_channels).
            if await self._call(self.sessions.switch_channels(agent_id, channels)) is not None:
                self.desks.push_presence(session)
        if status is not None:
            await self._call(self.sessions.set_status(agent_id, status, reason))
        return m.ok(rid)

    async def _accept(self, session, msg, rid):
        offer_id = m.field(msg, "offer_id")
        # A SIP call is accepted by the agent's phone, never here: the service refuses it
        # (`answer_on_phone`, dispatcher.service.calls).
        await self._done(session, self.sessions.accept_at_desk(session.agent_id, offer_id), rid)

    async def _reject(self, session, msg, rid):
        reason = m.field(msg, "reason", False, default="") or ""
        await self._done(session, self.sessions.reject(
            session.agent_id, m.field(msg, "offer_id"), reason), rid)

    async def _wrap_up(self, session, msg, rid):
        await self._done(session, self.sessions.wrap_up(session.agent_id,
                                                         m.field(msg, "task_id")), rid)

    async def _complete(self, session, msg, rid):
        disposition = m.field(msg, "disposition")
        notes = m.field(msg, "notes", False, limit=MAX_NOTES_CHARS) or ""
        await self._done(session, self.sessions.complete(
            session.agent_id, m.field(msg, "task_id"), disposition, notes), rid)

    async def _pick(self, session, msg, rid):
        try:
            await self._done(session, self.sessions.pick(session.agent_id,
                                                         m.field(msg, "task_id")), rid)
        except DomainError:  # taken by someone else first, most likely: a fresh list follows
            self.desks.pulls.refresh(session.agent_id)
            raise

    async def _transfer(self, session, msg, rid):
        task_id = m.field(msg, "task_id")
        to_queue, to_agent = m.field(msg, "to_queue", False), m.field(msg, "to_agent", False)
        if (to_queue is None) == (to_agent is None):
            raise m.BadMessage("transfer: give exactly one of `to_queue`, `to_agent`")
        note = m.field(msg, "note", False, limit=MAX_NOTES_CHARS)  # why (collaboration)
        collaboration = getattr(self.desks, "collaboration", None)
        # Both services refuse a task the agent does not hold (`forbidden`).
        if note and collaboration is not None:
            await self._done(session, collaboration.transfer(
                task_id, session.agent_id, note, to_queue=to_queue, to_agent=to_agent), rid)
            return
        await self._done(session, self.sessions.transfer_held(
            session.agent_id, task_id, queue=to_queue, to_agent=to_agent), rid)

    async def _reply(self, session, msg, rid):
        task_id, text = m.field(msg, "task_id"), m.field(msg, "text", limit=m.MAX_TEXT_CHARS)
        # Who may reply to what is the service's rule (review.held_by; `Replies` applies it
        # again): asked first, so a stranger is `forbidden` even with no e-mail channel.
        held_by(self.desks.view.router, task_id, session.agent_id)
        hook = self.desks.reply_hook
        if hook is None:
            return m.error(m.NOT_AVAILABLE, "no e-mail channel is connected", rid)
        # The library answer used and the mode, when the reply box says
        # (docs/console-protocol.md); the agent's HTML, reply to all, the quote, the files uploaded for it.
        extra: dict[str, Any] = {k: m.field(msg, k, False) for k in ("answer_id", "mode")
                                 if msg.get(k)}
        html = m.field(msg, "html", False, limit=m.MAX_TEXT_CHARS)
        if html:
            extra["html"] = html
        for flag in ("reply_all", "quote"):
            if flag in msg:
                if not isinstance(msg[flag], bool):
                    raise m.BadMessage(f"reply: `{flag}` is true or false")
                extra[flag] = msg[flag]
        uploads = msg.get("attachments", [])
        if not isinstance(uploads, list) or not all(
                isinstance(u, str) and 0 < len(u) <= m.MAX_FIELD_CHARS for u in uploads):
            raise m.BadMessage("reply: `attachments` is a list of upload ids")
        if uploads:
            extra["uploads"] = tuple(uploads)
        result = hook(session.agent_id, task_id, text, **extra)
        if hasattr(result, "addCallback"):  # a Deferred (awaitable too, but not by asyncio)
            result = await self._call(result)
        elif inspect.isawaitable(result):
            result = await result
        held = result.get("held") if isinstance(result, dict) else None
        if held:
            return m.ok(rid, held=held)
        message = result.get("message") if isinstance(result, dict) else getattr(
            result, "id", None)
        return m.ok(rid, message_id=message, status="queued",
                    relay=self.desks.relay() if message else None)

    # ------------------------------------------------------------------ history and merge

    async def _history(self, session, msg, rid):
        customer_id = m.field(msg, "customer_id")
        if self.history is None:
            return m.error(m.NOT_AVAILABLE, "no customer history here", rid)
        # The service's rule (History.view_for): supervisors, agents serving the customer.
        view = await self._call(self.history.view_for(
            session.role, session.sub, customer_id, self.desks.timeline_limit))
        return {"type": m.HISTORY, "re": rid, "customer": self.desks.cards.of(view)}

    async def _merge(self, session, msg, rid):
        if session.role != "supervisor":
            raise Forbidden(session.sub, "merging customers (supervisors only)")
        if self.history is None:
            return m.error(m.NOT_AVAILABLE, "no customer history here", rid)
        office = self.desks.backoffice or BackOffice(history=self.history)  # checks the role
        merged = await self._call(office.merge_customers(
            Caller(session.sub, session.role), m.field(msg, "survivor_id"),
            m.field(msg, "merged_id")))
        return m.ok(rid, identities=[{"kind": i.kind, "value": i.value}
                                     for i in merged.identities],
                    task_ids=list(merged.task_ids))


class _Closing(Exception):
    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code, self.close_code = code, close_code

