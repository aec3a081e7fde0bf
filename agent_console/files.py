"""The files behind a conversation, over HTTP on the runtime's site: an e-mail's HTML body (for
a sandboxed frame), its attachments, and the files an agent uploads for a reply.

Sits in the console edge beside `web.py`. What it promises:
- `GET /console/mail?…` answers only a link this console signed for one viewer (HMAC-SHA256,
  a per-process key, a few minutes' life); the service (`Conversation`) checks again, at the
  time of the request, that the viewer may read the task. Anything else is 403, logged once.
- HTML bodies are sanitised (nh3) and served with their own Content-Security-Policy: no script,
  no form, no plugin; images only from this server (inline `cid:` parts) unless the link says
  the agent asked for remote images. The page frames them with `sandbox`.
- Attachments are sent as downloads (`Content-Disposition: attachment`), never rendered on our
  origin, except common raster images (PNG, JPEG, GIF, WebP) asked for inline by the HTML.
- `POST /console/upload?name=F` takes one file (`Authorization: Bearer <console token>`, an
  agent's) up to the configured size and answers 201 with its id only after it is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from typing import Any
from urllib.parse import quote, urlencode

from twisted.internet.defer import ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from dispatcher import net
from dispatcher.domain.errors import DomainError, Forbidden
from dispatcher.guard import Throttled
from dispatcher.service.accounts import AccountDisabled, UnknownAccount
from dispatcher.service.conversation import Viewer

from .auth import TokenRefused, Verifier, bearer
from .config import ConsoleSettings

log = logging.getLogger(__name__)
# Refusals a client can repeat are logged once a minute per client and reason.
refusals = Throttled(log)

LINK_SECONDS = 600
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
HTML_PART = "html"


class Links:
    """Signed, short-lived links to one message's HTML or attachment, for one viewer."""

    def __init__(self, key: bytes | None = None, seconds: float = LINK_SECONDS,
                 clock: Any = time.time) -> None:
        self.key = key or os.urandom(32)
        self.seconds = seconds
        self.clock = clock

    def _mac(self, fields: list[str]) -> str:
        return hmac.new(self.key, "\x1f".join(fields).encode(), hashlib.sha256).hexdigest()

    def link(self, viewer: Viewer, message_id: str, part: str, images: bool = False) -> str:
        expires = str(int(self.clock() + self.seconds))
        fields = [viewer.sub, viewer.role, message_id, part, "1" if images else "0", expires]
        query = {"m": message_id, "p": part, "i": fields[4], "e": expires, "s": viewer.sub,
                 "r": viewer.role, "k": self._mac(fields)}
        return "/console/mail?" + urlencode(query)

    def check(self, args: dict[bytes, list[bytes]]) -> tuple[Viewer, str, str, bool]:
        """(viewer, message id, part, images) of a link this console signed; ValueError for
        anything else (forged, altered, expired)."""
        def one(name: str) -> str:
            values = args.get(name.encode())
            if not values or len(values) != 1:
                raise ValueError(f"missing {name}")
            return values[0].decode("utf-8")
        fields = [one("s"), one("r"), one("m"), one("p"), one("i"), one("e")]
        if not hmac.compare_digest(self._mac(fields), one("k")):
            raise ValueError("bad signature")
        if int(fields[5]) < self.clock():
            raise ValueError("expired link")
        return Viewer(fields[0], fields[1]), fields[2], fields[3], fields[4] == "1"


def _client(request: Any) -> str:
    return net.client_host(request)


def _refuse(request: Any, code: int, text: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return text.encode() + b"\n"


class MailFiles(Resource):
    """`GET /console/mail?m=…&p=html|N&…`: a signed link's HTML body or attachment."""

    isLeaf = True

    def __init__(self, conversation: Any, links: Links) -> None:
        super().__init__()
        self.conversation = conversation
        self.links = links

    def render_GET(self, request: Any) -> Any:
        try:
            viewer, message_id, part, images = self.links.check(request.args)
        except (ValueError, UnicodeDecodeError) as exc:
            refusals.warning((_client(request), "link"), time.monotonic(),
                             "console: refused a file link from %s: %s", _client(request), exc)
            return _refuse(request, 403, "forbidden")
        d = ensureDeferred(self._serve(request, viewer, message_id, part, images))
        d.addErrback(self._failed, request, viewer)
        return NOT_DONE_YET

    async def _serve(self, request: Any, viewer: Viewer, message_id: str, part: str,
                     images: bool) -> None:
        request.setHeader(b"cache-control", b"private, no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        if part == HTML_PART:
            html = await self.conversation.html(
                viewer, message_id, lambda n: self.links.link(viewer, message_id, str(n)))
            host = request.getRequestHostname().decode("ascii", "replace")
            port = request.getHost().port
            own = f"http://{host}:{port}"
            img = f"{own} data: https: http:" if images else f"{own} data:"
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.setHeader(b"content-security-policy", (
                f"default-src 'none'; img-src {img}; style-src 'unsafe-inline'; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox "
                "allow-popups allow-popups-to-escape-sandbox").encode())
            body = ('<!doctype html><html><head><meta charset="utf-8"><base target="_blank">'
                    '<style>body{font:14px/1.45 system-ui,sans-serif;margin:8px;color:#111;'
                    'word-wrap:break-word}img{max-width:100%;height:auto}'
                    'blockquote{border-left:3px solid #ccc;margin:0 0 0 4px;padding-left:8px;'
                    'color:#444}</style></head><body>' + html + "</body></html>")
            request.write(body.encode("utf-8"))
        else:
            if not part.isdigit():
                raise Forbidden(viewer.sub, "no such part")
            f = await self.conversation.attachment(viewer, message_id, int(part))
            kind = f.content_type.lower()
            inline = kind in INLINE_IMAGES
            request.setHeader(b"content-type",
                              kind.encode() if inline else b"application/octet-stream")
            request.setHeader(b"content-security-policy", b"default-src 'none'; sandbox")
            disposition = "inline" if inline else "attachment"
            request.setHeader(b"content-disposition",
                              f"{disposition}; filename*=UTF-8''{quote(f.filename)}".encode())
            request.setHeader(b"content-length", str(len(f.content)).encode())
            request.write(f.content)
        request.finish()

    def _failed(self, failure: Any, request: Any, viewer: Viewer) -> None:
        if failure.check(DomainError):
            log.warning("console: refused %s a file: %s", viewer.sub, failure.getErrorMessage())
            body = _refuse(request, 403 if failure.check(Forbidden) else 404, "not available")
        else:
            log.error("console: serving a file to %s failed: %s", viewer.sub,
                      failure.getTraceback())
            body = _refuse(request, 500, "internal error")
        if not request.finished and not getattr(request, "_disconnected", False):
            request.write(body)
            request.finish()


class Uploads(Resource):
    """`POST /console/upload?name=F`: one file for a reply, by the agent the token names (an
    enabled account, as at the socket's hello: `Accounts.admit`)."""

    isLeaf = True

    def __init__(self, mail: Any, verifier: Verifier, settings: ConsoleSettings,
                 accounts: Any = None) -> None:
        super().__init__()
        self.mail = mail
        self.verifier = verifier
        self.settings = settings
        self.accounts = accounts

    @property
    def max_body_bytes(self) -> int:
        """The site refuses a larger upload before reading it (dispatcher/runtime/http.py)."""
        return self.settings.max_upload_bytes

    def render_POST(self, request: Any) -> Any:
        origin = request.getHeader(b"origin")
        if not self.settings.origin_allowed(None if origin is None else origin.decode("latin-1")):
            refusals.warning((_client(request), "origin"), time.monotonic(),
                             "console: refused an upload from origin %r", (origin or b"")[:200])
            return _refuse(request, 403, "origin not allowed")
        try:
            claims = self.verifier.verify(bearer(request.getHeader(b"authorization")))
        except TokenRefused as exc:
            refusals.warning((_client(request), "token"), time.monotonic(),
                             "console: refused an upload token from %s: %s", _client(request),
                             exc)
            request.setHeader(b"www-authenticate", b'Bearer error="invalid_token"')
            return _refuse(request, 401, "unauthorized")
        if claims.role != "agent":
            return _refuse(request, 403, "uploads are for agents")
        limit = self.settings.max_upload_bytes
        length = request.getHeader(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return _refuse(request, 413, f"at most {limit} bytes")
        content = request.content.read(limit + 1)
        if len(content) > limit:
            return _refuse(request, 413, f"at most {limit} bytes")
        d = ensureDeferred(self._store(request, claims.sub, content))
        d.addCallbacks(self._stored, self._refused, (request,), None, (request, claims.sub))
        return NOT_DONE_YET

    async def _store(self, request: Any, sub: str, content: bytes) -> Any:
        if self.accounts is not None:
            await self.accounts.admit(sub, "agent")  # a disabled account uploads nothing
        names = request.args.get(b"name") or [b""]
        kind = (request.getHeader(b"content-type") or b"application/octet-stream").decode(
            "latin-1")
        return await self.mail.upload(sub, names[0].decode("utf-8", "replace"), kind, content)

    @staticmethod
    def _stored(upload: Any, request: Any) -> None:
        request.setResponseCode(201)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        request.write(json.dumps({"upload_id": upload.id, "name": upload.filename,
                                  "size": upload.size, "type": upload.content_type}).encode())
        request.finish()

    @staticmethod
    def _refused(failure: Any, request: Any, sub: str) -> None:
        if failure.check(Forbidden, AccountDisabled, UnknownAccount):
            log.warning("console: refused an upload by %s: %s", sub, failure.getErrorMessage())
            body = _refuse(request, 403, "forbidden")
        elif failure.check(DomainError):
            body = _refuse(request, 400, failure.getErrorMessage())
        else:
            log.error("console: upload by %s failed: %s", sub, failure.getTraceback())
            body = _refuse(request, 500, "internal error")
        request.write(body)
        request.finish()
