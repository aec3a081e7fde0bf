"""Reading received messages off the reactor, within a time budget: `Reader.read` parses and
translates a raw message (parse.py + translate.py) in a small pool of worker processes
(worker.py) and fires with the `InboundMail`.

Why processes and not a thread pool: a thread cannot be stopped, so a message that takes the
`email` package minutes (or gigabytes) would hold a thread, its share of the GIL and the
memory for as long as it likes; a worker process over its budget is killed (SIGKILL) and
replaced, and its address space is capped (`memory_mb`). Measured on this 2-core machine
(one-off script, figures in the note on issue 13): a worker starts in ~0.3 s (once); a 10 MB message
with a 6.8 MB attachment takes 334 ms through a worker against 233 ms parsed in process; an
unbounded 0.2 MB Subject of encoded words delays reactor ticks by at most 0.3 ms in a worker
and 10.4 ms in a thread; an unbounded 0.8 MB one is cut off at the 2 s budget with the
server's own memory unchanged (61 MB).

Promises: `read` never waits longer than `wait + budget` seconds, and fails only with
`NotStored` (an attachment could not be written: a passing condition, the sender retries).
A message whose worker runs over `budget` seconds (from the moment a worker took it), fails
or dies, or that waited `wait` seconds for a free worker, is still read, cheaply, on the
reactor: the raw bytes, From, Subject and the threading ids by a bounded scan (bounds.py
`scan`), with a defect saying why ("parse budget exceeded (2 s)"). It is then stored and
routed like any other message; the sender is never refused for it.

Sits in the e-mail edge; the SMTP intake (smtp.py) owns one `Reader`."""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import logging
import os
import pickle
import sys
from collections import deque
from dataclasses import dataclass, field, is_dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol

from dispatcher.guard import Throttled
from dispatcher.service.mail import InboundMail

from . import prompt
from .bounds import DEFAULT_LIMITS, Limits, prepare, scan
from .parse import Parsed, parse
from .translate import inbound
from .worker import HEADER, READY, frame

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 2
DEFAULT_BUDGET_SECONDS = 2.0
DEFAULT_WAIT_SECONDS = 10.0
DEFAULT_MEMORY_MB = 1024


# What a worker's answer may name when it is unpickled: the data classes of an `InboundMail`,
# nothing callable. A worker reads hostile mail; should it ever be subverted, its answer still
# cannot make the server run anything (the "restricting globals" recipe of the pickle docs).
ANSWER_MODULES = frozenset({"dispatcher.service.mail", "dispatcher.service.ports"})


@functools.cache
def _answer_class(module: str, name: str) -> type | None:
    """The data class `module.name` when an answer may name it, else None (once per name)."""
    if module not in ANSWER_MODULES:
        return None
    found = getattr(sys.modules.get(module) or importlib.import_module(module), name, None)
    return found if isinstance(found, type) and is_dataclass(found) else None


class _AnswerUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _answer_class(module, name)
        if found is None:
            raise pickle.UnpicklingError(f"a worker's answer may not name {module}.{name}")
        return found


def load_answer(body: bytes) -> Any:
    return _AnswerUnpickler(io.BytesIO(body)).load()


def scanned(raw: bytes, queue: str, envelope_from: str, recipients: tuple[str, ...],
            limits: Limits, why: str, **kwargs: Any) -> InboundMail:
    """The message as a bounded scan reads it (no bodies, no attachments): what is stored and
    routed when the full reading did not finish."""
    prepared = prepare(raw, limits)
    s = scan(prepared, limits.fallback_charset)
    parsed = Parsed(from_address=s.from_address, from_name=s.from_name, subject=s.subject,
                    message_id=s.message_id, in_reply_to=s.in_reply_to,
                    references=s.references, defects=[*prepared.defects, why])
    return inbound(raw, queue, envelope_from, recipients, parsed=parsed, **kwargs)


def _cancel(timer: Any) -> None:
    """Cancel `timer` if it is still pending."""
    if timer is not None and timer.active():
        timer.cancel()


class NotStored(OSError):
    """An attachment could not be stored (a full disk): the SMTP intake answers 451."""


@dataclass(eq=False)
class _Job:
    raw: bytes
    queue: str
    envelope_from: str
    recipients: tuple[str, ...]
    kwargs: dict[str, Any]
    done: defer.Deferred = field(default_factory=defer.Deferred)
    deadline: float = 0.0  # waiting: until then for a worker; in a worker: its budget's end
    worker: _Worker | None = None


class _Worker(ProcessProtocol):
    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.buffer = bytearray()
        self.ready = False
        self.job: _Job | None = None
        self.ended = False
        self.timer: Any = None  # the budget timer (`Reader._budget_due`), kept between jobs

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self.buffer)
            if len(self.buffer) < HEADER.size + size:
                return
            body = bytes(self.buffer[HEADER.size:HEADER.size + size])
            del self.buffer[:HEADER.size + size]
            self.reader._answer(self, body)

    def errReceived(self, data: bytes) -> None:
        self.reader.throttled.warning("stderr", self.reader.now(), "e-mail reading worker: %s",
                                      data[:500].decode("utf-8", "replace").strip())

    def processEnded(self, reason: Any) -> None:
        self.ended = True
        self.reader._ended(self)

    def kill(self) -> None:
        if not self.ended:
            # whatever it raises, the process is already gone (or its transport closed)
            with contextlib.suppress(Exception):
                self.transport.signalProcess("KILL")


class Inline:
    """Reads in the calling thread, no budget: for in-process tests with a fake reactor."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits

    def start(self) -> None:
        pass

    def read(self, raw: bytes, queue: str, envelope_from: str, recipients: tuple[str, ...],
             **kwargs: Any) -> defer.Deferred[InboundMail]:
        return defer.maybeDeferred(inbound, raw, queue, envelope_from, recipients,
                                   parsed=parse(raw, self.limits), **kwargs)


class Reader:
    def __init__(self, reactor: Any, limits: Limits = DEFAULT_LIMITS,
                 workers: int = DEFAULT_WORKERS, budget: float = DEFAULT_BUDGET_SECONDS,
                 wait: float = DEFAULT_WAIT_SECONDS, memory_mb: int = DEFAULT_MEMORY_MB) -> None:
        self.reactor = reactor
        self.limits = limits
        self.size = max(1, workers)
        self.budget = budget
        self.wait = wait
        self.memory_mb = memory_mb
        self.workers: list[_Worker] = []
        self.waiting: deque[_Job] = deque()
        self.wait_timer: Any = None  # due when the first waiting job has waited `wait`
        self.throttled = Throttled(log)
        self.stopped = False
        reactor.addSystemEventTrigger("before", "shutdown", self.stop)

    def now(self) -> float:
        return self.reactor.seconds()

    def read(self, raw: bytes, queue: str, envelope_from: str, recipients: tuple[str, ...],
             **kwargs: Any) -> defer.Deferred[InboundMail]:
        """The message read in a worker, or by the bounded scan when that did not finish."""
        job = _Job(raw, queue, envelope_from, recipients, kwargs)
        if self.stopped:
            self._fallback(job, "not parsed: the server is stopping")
            return job.done
        idle = None if self.waiting else self._idle()
        if idle is not None:  # the common case: no waiting
            self._give(idle, job)
            return job.done
        job.deadline = self.now() + self.wait
        self.waiting.append(job)
        self._arm_wait()
        self._pump()
        return job.done

    def start(self) -> None:
        """Start every worker now (else they start with the first messages)."""
        while not self.stopped and len(self.workers) < self.size:
            before = len(self.workers)
            self._spawn()
            if len(self.workers) == before:
                return

    def stop(self) -> None:
        """Stop the workers (each message in hand is then read by the scan, `_ended`), and
        read the waiting ones by the scan now: a message waits for no worker, nor its wait timer,
        once the server stops (the stop would otherwise wait on its Deferred)."""
        self.stopped = True
        for worker in list(self.workers):
            worker.kill()
        _cancel(self.wait_timer)
        self.wait_timer = None
        while self.waiting:
            self._fallback(self.waiting.popleft(), "not parsed: the server is stopping")

    # ---------------------------------------------------------------- timers
    # One budget timer per worker and one wait timer for the waiting line, not one of each per
    # message: a timer that comes due looks at the job in hand (or the first one waiting) and
    # is set again for its own deadline when that is later. Every deadline is still kept to
    # the reactor's precision; a message costs no timer set and cancelled.

    def _arm_wait(self) -> None:
        if self.wait_timer is None and self.waiting:
            delay = max(0.0, self.waiting[0].deadline - self.now())
            self.wait_timer = self.reactor.callLater(delay, self._waited)

    def _budget_due(self, worker: _Worker) -> None:
        worker.timer = None
        job = worker.job
        if job is None or worker.ended:
            return
        late = job.deadline - self.now()
        if late > 0:
            worker.timer = self.reactor.callLater(late, self._budget_due, worker)
            return
        self._over(job)

    # ---------------------------------------------------------------- workers

    def _spawn(self) -> None:
        worker = _Worker(self)
        args = [sys.executable, "-m", "channels.email.worker", f"--memory-mb={self.memory_mb}"]
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
            self.reactor.spawnProcess(worker, sys.executable, args, env=env)  # no secrets
        except Exception as exc:  # noqa: BLE001 - jobs wait, then fall back to the scan
            self.throttled.error("spawn", self.now(), "e-mail: cannot start a reading worker:"
                                 " %s", exc)
            return
        self.workers.append(worker)

    def _pump(self) -> None:
        if self.stopped:
            return
        for worker in self.workers:
            if not self.waiting:
                return
            if worker.ready and worker.job is None and not worker.ended:
                self._give(worker, self.waiting.popleft())
        if self.waiting and len(self.workers) < self.size:
            self._spawn()

    def _idle(self) -> _Worker | None:
        for worker in self.workers:
            if worker.ready and worker.job is None and not worker.ended:
                return worker
        return None

    def _give(self, worker: _Worker, job: _Job) -> None:
        job.worker = worker
        worker.job = job
        job.deadline = self.now() + self.budget
        if worker.timer is None:
            worker.timer = self.reactor.callLater(self.budget, self._budget_due, worker)
        request = (job.raw, job.queue, job.envelope_from, job.recipients, job.kwargs,
                   self.limits)
        prompt.send(worker.transport,
                    frame(pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)))

    def _answer(self, worker: _Worker, body: bytes) -> None:
        if not worker.ready:
            worker.ready = body == READY
            self._pump()
            return
        job, worker.job = worker.job, None
        if job is None:
            return
        try:
            kind, value = load_answer(body)
        except Exception as exc:  # noqa: BLE001 - a torn answer: the worker is unusable
            kind, value = "error", f"{type(exc).__name__}: {exc}"
            worker.kill()
        if kind == "ok":
            if isinstance(value, InboundMail) and not value.raw:  # left out (worker.py)
                # the job's own bytes, set in place (the answer was just unpickled: nobody else
                # holds it); a dataclasses.replace would cost more than the trip it saves
                object.__setattr__(value, "raw", job.raw)
            job.done.callback(value)
        elif kind == "retry":
            job.done.errback(NotStored(value))
        else:
            self._fallback(job, f"not parsed: {value}")
        self._pump()

    def _over(self, job: _Job) -> None:
        worker = job.worker
        if worker is not None:
            worker.job = None
            worker.kill()
            self._drop(worker)
        self._fallback(job, f"parse budget exceeded ({self.budget:g} s)")
        self._pump()

    def _waited(self) -> None:
        self.wait_timer = None
        now = self.now()
        while self.waiting and self.waiting[0].deadline <= now:
            self._fallback(self.waiting.popleft(), f"not parsed: no free reader for {self.wait:g} s")
        self._arm_wait()

    def _ended(self, worker: _Worker) -> None:
        self._drop(worker)
        job, worker.job = worker.job, None
        if job is not None:
            self._fallback(job, "not parsed: the reading worker exited")
        self._pump()

    def _drop(self, worker: _Worker) -> None:
        _cancel(worker.timer)
        worker.timer = None
        if worker in self.workers:
            self.workers.remove(worker)

    def _fallback(self, job: _Job, why: str) -> None:
        self.throttled.warning(why, self.now(), "e-mail: %s; stored with a header scan only",
                               why)
        try:
            message = scanned(job.raw, job.queue, job.envelope_from, job.recipients,
                              self.limits, why, **job.kwargs)
        except Exception as exc:  # noqa: BLE001 - the scan never raises; keep the raw anyway
            message = inbound(job.raw, job.queue, job.envelope_from, job.recipients,
                              parsed=Parsed(defects=[why, f"scan: {type(exc).__name__}"]),
                              **job.kwargs)
        job.done.callback(message)
