"""channels/email/reading.py: a worker's answer is unpickled with only the data classes of an
`InboundMail` allowed, so a subverted worker (it reads hostile mail) cannot make the server run
anything; a real message's answer still comes through whole, and the raw bytes cross the pipes
once (the worker leaves them out of its answer, the Reader puts the job's back)."""

from __future__ import annotations

import os
import pickle

import pytest
from twisted.internet import task

from channels.email import worker
from channels.email.parse import parse
from channels.email.reading import Reader, _Worker, load_answer
from channels.email.translate import inbound
from tests.channels.email.hostile import raw


def test_a_real_answer_comes_through_whole(tmp_path) -> None:
    message = raw("pdf-single-part.eml")
    mail = inbound(message, "support", "a@customer.org", ("support@example.com",),
                   parsed=parse(message), attachments_dir=str(tmp_path))
    kind, value = load_answer(pickle.dumps(("ok", mail), protocol=pickle.HIGHEST_PROTOCOL))
    assert kind == "ok" and value == mail and value.attachments


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class _CallsOurs:
    def __reduce__(self):
        from dispatcher.service.mail import new_message_id

        return (new_message_id, (0.0,))


@pytest.mark.parametrize("answer", [_Evil(), _CallsOurs()])
def test_an_answer_naming_anything_callable_is_refused(answer) -> None:
    with pytest.raises(pickle.UnpicklingError):
        load_answer(pickle.dumps(("ok", answer)))


class _Pipe:
    """The stdin of a reading worker, as the Reader writes to it (and signals it)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.signals: list[str] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def signalProcess(self, name: str) -> None:  # noqa: N802 - Twisted's name
        self.signals.append(name)


def _worker_answers(request: bytes) -> bytes:
    """What the real worker loop (worker.py `main`) writes for one request frame."""
    import io
    import sys

    stdin, stdout = io.BytesIO(request), io.BytesIO()
    saved = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = io.TextIOWrapper(stdin), io.TextIOWrapper(stdout)
    try:
        worker.main([])
        answers = stdout.getvalue()
    finally:
        sys.stdin, sys.stdout = saved
    ready = worker.HEADER.size + len(worker.READY)
    return answers[ready:]  # after its READY frame


def test_the_worker_leaves_the_raw_bytes_out_and_the_reader_puts_them_back() -> None:
    """A free worker gets the message at once; its answer carries no copy of the raw bytes (a
    large message crosses the pipes once), and the message the Reader gives is whole."""
    message = raw("pdf-single-part.eml")
    clock = task.Clock()
    clock.addSystemEventTrigger = lambda *args: None
    reader = Reader(clock)
    process = _Worker(reader)
    process.transport = _Pipe()
    process.ready = True
    reader.workers.append(process)

    done = reader.read(message, "support", "a@customer.org", ("support@example.com",))
    assert process.job is not None and not reader.waiting and len(process.transport.written) == 1

    answer = _worker_answers(process.transport.written[0])
    kind, sent = load_answer(answer[worker.HEADER.size:])
    assert kind == "ok" and sent.raw == b"" and message not in answer
    process.outReceived(answer)
    got = []
    done.addCallback(got.append)
    expected = inbound(message, "support", "a@customer.org", ("support@example.com",),
                       parsed=parse(message))
    assert got == [expected] and got[0].raw == message
    assert process.job is None
    clock.advance(reader.budget)  # the worker's budget timer comes due: nothing in hand
    assert not process.transport.signals and not clock.getDelayedCalls()


def _reader_with_workers(count: int, budget: float = 2.0, wait: float = 10.0
                         ) -> tuple[task.Clock, Reader, list[_Worker]]:
    clock = task.Clock()
    clock.addSystemEventTrigger = lambda *args: None
    reader = Reader(clock, workers=count, budget=budget, wait=wait)
    workers = []
    for _ in range(count):
        process = _Worker(reader)
        process.transport = _Pipe()
        process.ready = True
        reader.workers.append(process)
        workers.append(process)
    return clock, reader, workers


def _answer(process: _Worker) -> None:
    """The worker answers the job in hand (as the real worker loop would)."""
    process.outReceived(_worker_answers(process.transport.written[-1]))


def test_each_message_gets_its_whole_budget_from_one_timer_per_worker() -> None:
    """The budget timer is kept between jobs: a message given to the worker just before the
    timer comes due is not cut short, and one over its own budget is cut at its end."""
    clock, reader, (process,) = _reader_with_workers(1, budget=2.0)
    message = raw("pdf-single-part.eml")
    first = reader.read(message, "support", "a@customer.org", ("support@example.com",))
    clock.advance(1.5)
    _answer(process)
    assert first.called and len(clock.getDelayedCalls()) == 1  # no timer set per message
    second = reader.read(message, "support", "a@customer.org", ("support@example.com",))
    got: list = []
    second.addCallback(got.append)
    clock.advance(0.5)  # the first message's budget ends: the second's does not
    assert not got and not process.transport.signals and process.job is not None
    clock.advance(1.49)
    assert not got
    clock.advance(0.01)  # 2 s after it was given: over its budget
    assert process.transport.signals == ["KILL"]
    assert got and "parse budget exceeded (2 s)" in got[0].defects


def test_messages_waiting_for_a_worker_are_read_by_the_scan_after_their_own_wait() -> None:
    clock, reader, (process,) = _reader_with_workers(1, budget=100.0, wait=10.0)
    message = raw("pdf-single-part.eml")
    reads = []
    for at in (0.0, 4.0, 0.0):  # read at 0 s, 4 s and 4 s
        clock.advance(at)
        got: list = []
        reader.read(message, "support", "a@customer.org", ("support@example.com",)
                    ).addCallback(got.append)
        reads.append(got)
    assert process.job is not None and len(reader.waiting) == 2
    clock.advance(9.99)  # 13.99 s: the first waiting one (at 4 s) has waited 9.99 s
    assert not reads[1] and not reads[2]
    clock.advance(0.01)
    assert "not parsed: no free reader for 10 s" in reads[1][0].defects
    assert "not parsed: no free reader for 10 s" in reads[2][0].defects
    assert not reader.waiting and not reads[0]


def test_messages_waiting_when_the_reader_stops_are_read_by_the_scan_at_once() -> None:
    """A stop leaves no message waiting on a worker or a timer: the one in hand is read by
    the scan when its worker ends, the waiting ones at the stop itself."""
    clock, reader, (process,) = _reader_with_workers(1, budget=100.0, wait=10.0)
    message = raw("pdf-single-part.eml")
    reads = []
    for _ in range(3):
        got: list = []
        reader.read(message, "support", "a@customer.org", ("support@example.com",)
                    ).addCallback(got.append)
        reads.append(got)
    assert process.job is not None and len(reader.waiting) == 2
    reader.stop()
    assert process.transport.signals == ["KILL"]
    assert not reader.waiting and reader.wait_timer is None
    for got in reads[1:]:
        assert got and "not parsed: the server is stopping" in got[0].defects
