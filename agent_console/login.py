"""`POST /login` and `POST /login/refresh` on the runtime's HTTP site: the console's sign-in
with an id and a password (mounted by the console edge, plugin.py; docs/protocol.md "Sign-in").

Sits in `agent_console`: it translates HTTP into `Accounts.sign_in` / `Accounts.admit` (the
service decides) and signs the console token with the console's `Signer`. What it promises:
- JSON in, JSON out, `Cache-Control: no-store`: a body that is not `application/json` is 415,
  one above `login_max_body_bytes` 413, one that is not `{"id": str, "password": str}` 400;
- a browser's `Origin` must be one of `allowed_origins` (403), as at the WebSocket handshake;
  a request without one follows `allow_missing_origin`;
- 200 `{"token", "expires_at", "role", "id"}`, the token living `login_token_ttl_seconds`;
  401 `sign_in_refused` with one message for an unknown id and a wrong password (the service
  checks a hash in both cases); 403 `account_disabled` only once the password was right;
- more than `login_max_failures` failed sign-ins within `login_window_seconds` from one client
  address, or for one account id, are answered 429 with `Retry-After` before any hash check;
- `/login/refresh` with `Authorization: Bearer <token>` gives a fresh token to the holder of an
  enabled account (401 for a bad token or no account, 403 for a disabled one);
- each refusal is logged once with the id and the client address, never the password or a
  token.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from http import HTTPStatus
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from dispatcher import net
from dispatcher.guard import Throttled
from dispatcher.service import pages
from dispatcher.service.accounts import AccountDisabled, SignInRefused, UnknownAccount
from dispatcher.service.wire import NotJson, read_json

from . import messages as m
from .auth import Signer, TokenRefused, TokenRevoked, Verifier, bearer
from .config import ConsoleSettings

log = logging.getLogger(__name__)

MAX_TRACKED_KEYS = 10_000  # addresses and ids with recent failures kept (oldest dropped)
LOGGED_ID_CHARS = 64
REFUSED_MESSAGE = "wrong id or password"


class Throttle:
    """Failures per key in a sliding window: `wait(key)` is the seconds to wait before the
    next attempt (0: go ahead), `fail(key)` counts one, `undo(key)` takes the last back."""

    def __init__(self, limit: int, window: float, clock: Any) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        horizon = self.clock.seconds() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def wait(self, key: str) -> float:
        times = self._recent(key)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[-self.limit] + self.window - self.clock.seconds())

    def fail(self, key: str) -> None:
        times = self._recent(key)
        if times is None:
            if len(self._failures) >= MAX_TRACKED_KEYS:
                del self._failures[next(iter(self._failures))]
            times = self._failures[key] = deque(maxlen=self.limit)
        times.append(self.clock.seconds())

    def undo(self, key: str) -> None:
        """Take back one failure counted ahead (the attempt succeeded)."""
        times = self._failures.get(key)
        if times:
            times.pop()
            if not times:
                del self._failures[key]


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LoginPage(Resource):
    """`/login` (and `/login/refresh`): see the module docstring."""

    isLeaf = True

    def __init__(self, settings: ConsoleSettings, accounts: Any, signer: Signer,
                 verifier: Verifier, clock: Any) -> None:
        super().__init__()
        self.settings = settings
        self.accounts = accounts
        self.signer = signer
        self.verifier = verifier
        self.clock = clock
        self.refusals = Throttled(log)  # what a client can repeat: once a minute per key
        self.by_address = Throttle(settings.login_max_failures, settings.login_window_seconds,
                                   clock)
        self.by_id = Throttle(settings.login_max_failures, settings.login_window_seconds, clock)

    def render_POST(self, request: Any) -> Any:
        pages.harden(request, pages.policy())  # JSON answers: no source, never framed
        path = [p for p in request.postpath if p]
        if path not in ([], [b"refresh"]):
            return self._answer(request, HTTPStatus.NOT_FOUND, error=m.LOGIN_BAD_REQUEST,
                                message="no such page")
        origin = request.getHeader(b"origin")
        if not self.settings.origin_allowed(None if origin is None else origin.decode("latin-1")):
            shown_origin = (origin or b"(none)").decode("latin-1")[:200]
            self.refusals.warning((shown_origin, "origin"), self.clock.seconds(),
                                  "login: refused a request from origin %r", shown_origin)
            return self._answer(request, HTTPStatus.FORBIDDEN, error=m.LOGIN_FORBIDDEN_ORIGIN,
                                message="origin not allowed")
        work = self._refresh(request) if path else self._login(request)
        d = ensureDeferred(work)
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    # ------------------------------------------------------------------ sign-in

    async def _login(self, request: Any) -> None:
        address = _address(request)
        try:
            account_id, password = self._credentials(request)
        except BadRequest as exc:
            log.info("login: bad request from %s: %s", address, exc)
            self._finish(request, exc.status, error=m.LOGIN_BAD_REQUEST, message=str(exc))
            return
        shown = account_id[:LOGGED_ID_CHARS]
        wait = max(self.by_address.wait(address), self.by_id.wait(account_id))
        if wait > 0:
            seconds = math.ceil(wait)
            self.refusals.warning((address, shown, "throttled"), self.clock.seconds(),
                                  "login: too many failed sign-ins (id %r, from %s): retry in"
                                  " %d s", shown, address, seconds)
            request.setHeader(b"retry-after", str(seconds).encode())
            self._finish(request, HTTPStatus.TOO_MANY_REQUESTS, error=m.LOGIN_THROTTLED,
                         message=f"too many attempts, try again in {seconds} s",
                         retry_after=seconds)
            return
        # Counted as failures before the (slow) check, so that attempts sent side by side meet
        # the limit too; taken back when the password was right.
        self.by_address.fail(address)
        self.by_id.fail(account_id)
        try:
            account = await self.accounts.sign_in(account_id, password)
        except SignInRefused:
            log.warning("login: refused a sign-in for id %r from %s: wrong id or password",
                        shown, address)
            self._finish(request, HTTPStatus.UNAUTHORIZED, error=m.LOGIN_REFUSED,
                         message=REFUSED_MESSAGE)
            return
        except AccountDisabled:
            self.by_address.undo(address)
            self.by_id.undo(account_id)
            log.warning("login: refused a sign-in for id %r from %s: account disabled",
                        shown, address)
            self._finish(request, HTTPStatus.FORBIDDEN, error=m.LOGIN_DISABLED,
                         message="account disabled")
            return
        self.by_address.undo(address)
        self.by_id.undo(account_id)
        log.info("login: %s (%s) signed in from %s", account.id, account.role, address)
        self._token(request, account.id, account.role)

    def _credentials(self, request: Any) -> tuple[str, str]:
        kind = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if kind != b"application/json":
            raise BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        limit = self.settings.login_max_body_bytes
        length = request.getHeader(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"at most {limit} bytes")
        request.content.seek(0)
        body = request.content.read(limit + 1)
        if len(body) > limit:
            raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"at most {limit} bytes")
        try:
            data = read_json(body)  # bounded (service/wire.py): never a RecursionError
        except NotJson as exc:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) \
                or not isinstance(data.get("password"), str) or not data["id"]:
            raise BadRequest(HTTPStatus.BAD_REQUEST, 'send {"id": "...", "password": "..."}')
        return data["id"], data["password"]

    # ------------------------------------------------------------------ refresh

    async def _refresh(self, request: Any) -> None:
        address = _address(request)
        try:
            try:
                claims = self.verifier.verify(bearer(request.getHeader(b"authorization")))
            except TokenRevoked as exc:  # a disabled account is answered as such
                claims = exc.claims
                await self.accounts.admit(claims.sub, claims.role)
                raise
            account = await self.accounts.admit(claims.sub, claims.role)
            if account is None:
                raise TokenRefused("no account to refresh")
        except TokenRefused as exc:
            log.warning("login: refused a refresh from %s: %s", address, exc)
            request.setHeader(b"www-authenticate", b'Bearer error="invalid_token"')
            self._finish(request, HTTPStatus.UNAUTHORIZED, error=m.LOGIN_TOKEN_REFUSED,
                         message=str(exc))
            return
        except (AccountDisabled, UnknownAccount) as exc:
            log.warning("login: refused a refresh for %s from %s: %s", claims.sub, address,
                        exc.code)
            status = (HTTPStatus.FORBIDDEN if isinstance(exc, AccountDisabled)
                      else HTTPStatus.UNAUTHORIZED)
            self._finish(request, status, error=exc.code, message=str(exc))
            return
        self._token(request, account.id, account.role)

    # ------------------------------------------------------------------ answers

    def _token(self, request: Any, sub: str, role: str) -> None:
        ttl = self.settings.login_token_ttl_seconds
        token = self.signer.issue(sub, role, ttl)
        expires_at = int(self.signer.clock()) + int(ttl)
        self._finish(request, HTTPStatus.OK, token=token, expires_at=expires_at, role=role,
                     id=sub)

    def _failed(self, failure: Any, request: Any) -> None:
        log.error("login: failed: %s", failure.getErrorMessage())
        self._finish(request, HTTPStatus.INTERNAL_SERVER_ERROR, error="internal",
                     message="internal error")

    @property
    def max_body_bytes(self) -> int:
        """The site refuses a larger body before reading it (dispatcher/runtime/http.py)."""
        return self.settings.login_max_body_bytes

    @staticmethod
    def too_large(limit: int, request: Any) -> tuple[bytes, bytes]:
        """The site's 413, in this page's JSON shape."""
        return b"application/json", json.dumps(
            {"error": m.LOGIN_BAD_REQUEST, "message": f"at most {limit} bytes"}).encode()

    def _finish(self, request: Any, status: int, **body: Any) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.write(self._answer(request, status, **body))
        request.finish()

    @staticmethod
    def _answer(request: Any, status: int, **body: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode()


def _address(request: Any) -> str:
    return net.client_host(request)


def mount(root: Resource, page: LoginPage) -> None:
    """Hang the sign-in on the site: `/login` and `/login/refresh`."""
    root.putChild(m.LOGIN_PATH.strip("/").encode(), page)
