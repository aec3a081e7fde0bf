"""`switchboard report`: the statistics of a period from the event log, on the command line.

    switchboard report --from 2026-11-01 --to 2026-12-01 [--queue Q] [--interval 15m|1h|1d]
                       [--format text|csv|json|html] [--output FILE]

What it promises: the command reads the log on its own read connection (a running server is
not slowed; `EdgeCommandContext.reports`), shows progress on stderr while it reads (a line that
updates itself on a terminal, a line every few seconds otherwise), writes the report to stdout
or `--output`, and exits 0; bad arguments exit 2 with one line saying why, a database it cannot
read exits 4 (the runtime says so).

The same reports over HTTP are `ReportPage` (report_page.py); both render with report_views.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dispatcher.domain.errors import DomainError
from dispatcher.domain.metrics import INTERVALS
from dispatcher.progress import ProgressLine
from dispatcher.service.edges import EdgeCommandContext
from dispatcher.service.reports import parse_interval, parse_time

from .report_views import DEFAULT_INTERVAL, FORMATS, render

EXIT_USAGE = 2


def add_commands(sub: Any) -> None:
    """`report`."""
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


async def cmd_report(context: EdgeCommandContext, args: Any) -> int:
    try:
        start, end = parse_time(args.start), parse_time(args.end)
        interval = parse_interval(args.interval)
        progress = None if args.quiet else ProgressLine(sys.stderr)
        report = await context.reports.build(start, end, interval, args.queue, progress)
    except DomainError as exc:
        print(f"switchboard report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if progress is not None:
        progress.finish(report.events)
    text = render(report, args.format)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"switchboard report: cannot write {args.output}: {exc.strerror}",
                  file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


COMMANDS = {("report", None): cmd_report}
