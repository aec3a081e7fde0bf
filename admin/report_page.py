"""`GET /report`: the reports of `switchboard report` (report.py) over HTTP, in the admin
edge.

`ReportPage` serves `GET /report?from=…&to=…[&queue=…][&interval=…][&format=…]` with
`Authorization: Bearer <JWT>` of role supervisor (the console's keys, checked by
`dispatcher.service.tokens`): no or bad token 401, another role 403, bad parameters 400, and the
report (rendered by report_views.py, off the reactor thread) with its content type otherwise.
The admin edge's build mounts it (plugin.py) with the runtime's verifier of people's tokens
(the console's keys: `EdgeContext.people_tokens`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from twisted.internet import threads
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from dispatcher import net
from dispatcher.domain.errors import DomainError
from dispatcher.guard import Throttled
from dispatcher.service import pages, tokens
from dispatcher.service.reports import Reports, parse_interval, parse_time

from .report_views import CONTENT_TYPES, DEFAULT_INTERVAL, FORMATS, render

log = logging.getLogger(__name__)

# The HTML report's Content-Security-Policy: its own inline style, nothing else, never framed.
REPORT_CSP = pages.policy("style-src 'unsafe-inline'")




def _client(request: Any) -> str:
    return net.client_host(request)


class ReportPage(Resource):
    """`GET /report`: see the module docstring. `verifier()` gives the token verifier (loaded
    lazily, once the keys are known) or raises KeyProblem."""

    isLeaf = True

    def __init__(self, reports: Reports, verifier: Any) -> None:
        super().__init__()
        self.reports = reports
        self._verifier = verifier
        self._loaded: tokens.Verifier | None = None
        # a client repeating a refused token gets one line a minute, with a count
        self.refusals = Throttled(log)

    def _verify(self, token: str) -> tokens.Claims:
        if self._loaded is None:
            self._loaded = self._verifier()
        return self._loaded.verify(token)

    def render_GET(self, request: Any) -> Any:  # noqa: C901 - auth, then each argument checked
        pages.harden(request, REPORT_CSP)  # every answer, the HTML report and the errors
        auth = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self._error(request, http.UNAUTHORIZED, "a supervisor token is required")
        try:
            claims = self._verify(token.strip())
        except tokens.TokenRefused as exc:
            self.refusals.log(logging.INFO, (_client(request), str(exc)), time.monotonic(),
                              "report: token refused from %s: %s", _client(request), exc)
            return self._error(request, http.UNAUTHORIZED, f"token refused: {exc}")
        except tokens.KeyProblem as exc:
            log.error("report: no usable token keys: %s", exc)
            return self._error(request, http.SERVICE_UNAVAILABLE, "token keys not usable")
        if claims.role != tokens.SUPERVISOR:
            return self._error(request, http.FORBIDDEN, "reports are for supervisors")
        try:
            start, end = parse_time(_arg(request, "from")), parse_time(_arg(request, "to"))
            interval = parse_interval(_arg(request, "interval") or DEFAULT_INTERVAL)
            fmt = _arg(request, "format") or "json"
            if fmt not in FORMATS:
                raise _BadRequest(f"format must be one of {', '.join(FORMATS)}")
            queue = _arg(request, "queue") or None
        except (DomainError, _BadRequest) as exc:
            return self._error(request, http.BAD_REQUEST, str(exc))
        log.info("report %s..%s queue=%s for %s", start, end, queue, claims.sub)
        d = self.reports.build(start, end, interval, queue)
        finished = request.notifyFinish()
        finished.addErrback(lambda _: None)  # the client went away: nothing to write to

        def rendered(report: Any) -> Any:
            # Off the reactor thread: a month by the hour takes seconds to render.
            return threads.deferToThread(render, report, fmt)

        def ok(body: str) -> None:
            if getattr(request, "_disconnected", False):
                return
            request.setHeader(b"content-type", CONTENT_TYPES[fmt].encode())
            request.write(body.encode("utf-8"))
            request.finish()

        def failed(failure: Any) -> None:
            if getattr(request, "_disconnected", False):
                return
            if failure.check(DomainError):
                request.write(self._error(request, http.BAD_REQUEST,
                                          failure.getErrorMessage()))
            else:
                log.error("report failed: %s", failure.getTraceback())
                request.write(self._error(request, http.INTERNAL_SERVER_ERROR,
                                          "the report could not be built"))
            request.finish()

        d.addCallback(rendered)
        d.addCallbacks(ok, failed)
        return NOT_DONE_YET

    @staticmethod
    def _error(request: Any, code: int, message: str) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if code == http.UNAUTHORIZED:
            request.setHeader(b"www-authenticate", b'Bearer realm="switchboard"')
        return (message + "\n").encode("utf-8")


class _BadRequest(Exception):
    pass


def _arg(request: Any, name: str) -> str:
    values = request.args.get(name.encode(), [])
    if len(values) > 1:
        raise _BadRequest(f"{name} given more than once")
    return values[0].decode("utf-8", "replace") if values else ""
