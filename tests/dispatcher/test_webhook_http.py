"""dispatcher/webhook_http.py: a POST that gets no answer fails after its timeout (connecting
included) without blocking anything; an answer's body is thrown away, and a huge one is cut
off. Against a memory reactor; the real receiver is in tests/dispatcher/runtime/
test_webhooks_e2e.py."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

from dispatcher.webhook_http import MAX_BODY, HttpPoster, NoAnswer, _Discard


def test_no_answer_fails_after_the_timeout() -> None:
    reactor = MemoryReactorClock()
    poster = HttpPoster(reactor)
    outcome: list[Failure] = []
    d = poster.post("http://127.0.0.1:9/hook", {"Switchboard-Event-Id": "task-1"}, b"{}", 2.0)
    d.addErrback(outcome.append)
    (host, port, *_), = reactor.tcpClients
    assert (host, port) == ("127.0.0.1", 9)
    reactor.advance(1.9)
    assert outcome == []
    reactor.advance(0.2)
    assert outcome and outcome[0].check(NoAnswer)
    assert str(outcome[0].value) == "no answer within 2 s"


class Producing(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.stopped = False

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's name
        self.stopped = True


def test_a_body_is_discarded_and_a_huge_one_cut_off() -> None:
    small = _Discard()
    small.makeConnection(Producing())
    small.dataReceived(b"x" * 100)
    small.connectionLost(Failure(ResponseDone()))
    assert small.done.called and not small.transport.stopped

    huge = _Discard()
    huge.makeConnection(Producing())
    huge.dataReceived(b"x" * (MAX_BODY + 1))
    assert huge.transport.stopped
