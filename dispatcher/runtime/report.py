"""Reports at the edge of the runtime: `switchboard report` and `GET /report`.

    switchboard report --from 2026-11-01 --to 2026-12-01 [--queue Q] [--interval 15m|1h|1d]
                       [--format text|csv|json|html] [--output FILE]

What it promises: the command reads the log on its own read connection (a running server is
not slowed), shows progress on stderr while it reads (a line that updates itself on a terminal,
a line every few seconds otherwise), writes the report to stdout or `--output`, and exits 0; bad
arguments exit 2 with one line saying why, a database it cannot read exits 4.

The same reports over HTTP are `ReportPage` (report_page.py); both render with report_views.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from twisted.internet.defer import ensureDeferred

from dispatcher.domain.errors import DomainError
from dispatcher.domain.metrics import INTERVALS
from dispatcher.service.reports import Reports, parse_interval, parse_time

from .report_views import DEFAULT_INTERVAL, FORMATS, render

EXIT_USAGE = 2
EXIT_DATABASE = 4
PROGRESS_EVERY_SECONDS = 0.5  # on a terminal
PROGRESS_LINE_EVERY_SECONDS = 5.0  # to a file or a pipe


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
