"""Reports at the edge of the runtime: `switchboard report` and `GET /report`.

    switchboard report --from 2026-11-01 --to 2026-12-01 [--queue Q] [--interval 15m|1h|1d]
                       [--format text|csv|json|html] [--output FILE]

What it promises: the command reads the log on its own read connection (a running server is
not slowed), shows progress on stderr while it reads (a line that updates itself on a terminal,
a line every few seconds otherwise), writes the report to stdout or `--output`, and exits 0; bad
arguments exit 2 with one line saying why, a database it cannot read exits 4.

`ReportPage` serves the same reports over HTTP: `GET /report?from=…&to=…[&queue=…]
[&interval=…][&format=…]` with `Authorization: Bearer <JWT>` of role supervisor (the console's
keys, checked by `dispatcher.service.tokens`): no or bad token 401, another role 403, bad
parameters 400, and the report with its content type otherwise.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from twisted.internet import threads
from twisted.internet.defer import ensureDeferred
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from dispatcher.domain.errors import DomainError
from dispatcher.domain.metrics import INTERVALS
from dispatcher.guard import Throttled
from dispatcher.service import pages, tokens
from dispatcher.service.reports import (
    CONTENT_TYPES,
    FORMATS,
    Reports,
    parse_interval,
    parse_time,
    render,
)

log = logging.getLogger(__name__)

EXIT_USAGE = 2
EXIT_DATABASE = 4
PROGRESS_EVERY_SECONDS = 0.5  # on a terminal
PROGRESS_LINE_EVERY_SECONDS = 5.0  # to a file or a pipe
DEFAULT_INTERVAL = "1h"
CONSOLE_EDGE = "console"  # whose token settings the HTTP reports accept


def add_parser(sub: Any) -> None:
    """The `report` command (called by cli.build_parser)."""
    r = sub.add_parser("report", help="statistics of a period from the event log")
    r.add_argument("--from", dest="start", required=True,
                   help="start, ISO 8601 (2026-11-01, 2026-11-01T08:00+01:00; no zone: UTC)")
    r.add_argument("--to", dest="end", required=True, help="end (excluded), same forms")
    r.add_argument("--queue", help="only this queue's tasks")
    r.add_argument("--interval", choices=list(INTERVALS), default=DEFAULT_INTERVAL,
                   help="the length of each row of the interval tables")
    r.add_argument("--format", choices=list(FORMATS), default="text",
                   help="text for a terminal; csv, json or html (with plots) for a file")
    r.add_argument("--output", "-o", help="write the report to this file (default: stdout)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


class ProgressLine:
    """Progress of a long read on stderr: rewritten in place on a terminal, else a line every
    few seconds. Called from the reading thread; only writes to the stream."""

    def __init__(self, stream: TextIO, clock: Any = time.monotonic, label: str = "report",
                 unit: str = "events", verb: str = "read") -> None:
        self.stream = stream
        self.clock = clock
        # "report: 1,000 of 5,000 events read (20%), 1.2 s"; other long commands say their own
        self.label, self.unit, self.verb = label, unit, verb
        self.tty = stream.isatty()
        self.started = clock()
        self.last = self.started - 3600.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        every = PROGRESS_EVERY_SECONDS if self.tty else PROGRESS_LINE_EVERY_SECONDS
        if now - self.last < every and done < total:
            return
        self.last = now
        share = f" ({100 * done / total:.0f}%)" if total else ""
        verb = f" {self.verb}" if self.verb else ""
        text = (f"{self.label}: {done:,} of {total:,} {self.unit}{verb}{share}, "
                f"{now - self.started:.1f} s")
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = True

    def finish(self, events: int) -> None:
        took = self.clock() - self.started
        end = "\n" if self.tty and self.shown else ""
        self.stream.write(f"{end}{self.label}: {events:,} {self.unit} in {took:.1f} s\n")
        self.stream.flush()


def report_command(args: Any, url: str) -> int:
    """`switchboard report`; runs its own reactor loop (like the admin commands)."""
    try:
        start, end = parse_time(args.start), parse_time(args.end)
        interval = parse_interval(args.interval)
    except DomainError as exc:
        print(f"switchboard report: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from twisted.internet import reactor, task

    from dispatcher.storage import schema
    from dispatcher.storage.reports import SqlReportStore

    from .app import Storage
    status = {"code": 0}

    async def run(_reactor: Any) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        await task.deferLater(_reactor, 0, lambda: None)
        storage = events = None
        try:
            storage = Storage(url, reactor)
            if not storage.check().ok:
                print(f"the database is not ready: {schema.STALE_SCHEMA_HINT}", file=sys.stderr)
                status["code"] = 1
                return
            storage.start()
            events = SqlReportStore(url, reactor)
            events.start()
            progress = None if args.quiet else ProgressLine(sys.stderr)
            report = await Reports(events, storage.store, reactor).build(
                start, end, interval, args.queue, progress)
            if progress is not None:
                progress.finish(report.events)
            text = render(report, args.format)
            if args.output:
                Path(args.output).write_text(text, encoding="utf-8")
            else:
                sys.stdout.write(text)
                sys.stdout.flush()
        except DomainError as exc:
            print(f"switchboard report: {exc}", file=sys.stderr)
            status["code"] = EXIT_USAGE
        except SQLAlchemyError as exc:
            line = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            print(f"switchboard report: database: {line}", file=sys.stderr)
            status["code"] = EXIT_DATABASE
        except OSError as exc:
            print(f"switchboard report: cannot write {args.output}: {exc.strerror}",
                  file=sys.stderr)
            status["code"] = 1
        finally:
            if events is not None:
                events.stop()
            if storage is not None:
                await storage.stop()

    try:
        task.react(lambda _reactor: ensureDeferred(run(_reactor)))
    except SystemExit as exc:
        return status["code"] or int(exc.code or 0)
    return status["code"]


# ---------------------------------------------------------------------- HTTP


def verifier_from(settings: Any, stored: bytes | None = None) -> tokens.Verifier:
    """A token verifier from the console edge's settings (read by attribute: the runtime does
    not import the edge); `stored`: the HS256 secret kept in the database, used when no secret
    file is set. Raises tokens.KeyProblem when its keys cannot be used."""
    keys = tokens.load_keys(
        settings.jwt_algorithm, secret_file=settings.jwt_secret_file,
        public_key_file=settings.jwt_public_key_file,
        private_key_file=settings.jwt_private_key_file, stored=stored, label="report")
    return tokens.Verifier(
        keys, settings.issuer, settings.audience, settings.leeway_seconds,
        max_lifetime=getattr(settings, "max_token_lifetime_seconds",
                             tokens.MAX_LIFETIME_SECONDS),
        max_integration_lifetime=getattr(settings, "max_integration_token_lifetime_seconds",
                                         tokens.MAX_INTEGRATION_LIFETIME_SECONDS))


# The HTML report's Content-Security-Policy: its own inline style, nothing else, never framed.
REPORT_CSP = pages.policy("style-src 'unsafe-inline'")




def _client(request: Any) -> str:
    peer = request.getClientAddress()
    return str(getattr(peer, "host", peer))


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

    def render_GET(self, request: Any) -> Any:
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
