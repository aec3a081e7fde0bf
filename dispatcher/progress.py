"""A progress line on stderr for long command-line work (reading a report's events, importing
answers, simulating): rewritten in place on a terminal, one line every few seconds otherwise.

A top-level helper under every edge and the runtime (no service, no storage): it only writes to
the stream it is given.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

PROGRESS_AFTER_SECONDS = 1.0  # a command that takes longer shows its progress on stderr
PROGRESS_EVERY_SECONDS = 0.5  # on a terminal
PROGRESS_LINE_EVERY_SECONDS = 5.0  # to a file or a pipe


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
