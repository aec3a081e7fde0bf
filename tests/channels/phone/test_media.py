"""The routing side of queue media (media.py) with task.Clock: each call's programme (welcome,
music, the position announcement every `announce_interval` from the core's figures, the
callback offer, the confirmation), and MediaLink's pipe: commands out, replies in, and the
worker restarted after it dies with the streams on their same ports."""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from channels.phone import rtp
from channels.phone.config import PhoneSettings
from channels.phone.media import Hold, MediaLink
from dispatcher.service.queue_wait import Standing

OFFER = ("v=0\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\n"
         "a=rtpmap:101 telephone-event/8000\r\n")


class FakeLink:
    host = "127.0.0.1"

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.played: defer.Deferred | None = None
        self.on_digit = None

    def open(self, key, host, port, pt, codec, event, play):
        self.log.append(("open", key, host, port, pt, codec, event, play))
        return defer.succeed(30000)

    def play(self, key, names, replace=False):
        self.log.append(("play", key, names, replace))
        self.played = defer.Deferred()
        return self.played

    def close(self, key):
        self.log.append(("close", key))


class FakeWaits:
    def __init__(self) -> None:
        self.standing = Standing(3, 100.0)

    def position(self, task_id, now):
        return self.standing


class Task:
    id = "t1"
    attributes: dict = {}


def hold(**settings):
    clock, link, waits, digits = Clock(), FakeLink(), FakeWaits(), []
    s = PhoneSettings(**{"enabled": True, "announce_interval": 45.0, **settings})
    h = Hold(clock, link, waits, s, lambda call_id, d: digits.append((call_id, d)))
    return h, clock, link, waits, digits


def test_programme_welcome_then_announcements_every_interval():
    h, clock, link, waits, _ = hold(callback_digit="1", media_languages="ventes=fr")
    answers = []
    h.begin("c1", Task(), "support", OFFER).addCallback(answers.append)
    (sdp,) = answers
    assert "m=audio 30000 RTP/AVP 0 101" in sdp and h.answer_of("c1") == sdp
    assert link.log == [("open", "c1", "10.0.0.5", 40000, 0, 0, 101, ["en/welcome"])]
    clock.advance(44.9)
    assert len(link.log) == 1
    clock.advance(0.1)
    assert link.log[-1] == ("play", "c1", ["en/you_are_number", "en/n_3", "en/in_queue",
                                            "en/expected_wait", "en/min_2", "en/callback_press",
                                            "en/n_1"], False)
    waits.standing = Standing(1, None)  # the core has no figure for the wait: left out
    clock.advance(45)
    assert link.log[-1][2] == ["en/you_are_number", "en/n_1", "en/in_queue",
                               "en/callback_press", "en/n_1"]
    h.end("c1")
    assert link.log[-1] == ("close", "c1") and h.answer_of("c1") is None
    clock.advance(300)
    assert link.log[-1] == ("close", "c1")  # no announcement after the end
    # per queue language, then the call's own
    h.begin("c2", Task(), "ventes", OFFER)
    assert link.log[-1][-1] == ["fr/welcome"]
    task = Task()
    task.attributes = {"language": "en-GB"}
    h.begin("c3", task, "ventes", OFFER)
    assert link.log[-1][-1] == ["en/welcome"]


def test_no_usable_offer_or_media_off_means_no_stream():
    h, _, link, _, _ = hold()
    got = []
    h.begin("c1", Task(), "support", OFFER.replace("RTP/AVP 0 101", "RTP/AVP 9")) \
        .addCallback(got.append)
    h.begin("c2", Task(), "support", "").addCallback(got.append)
    assert got == [None, None] and link.log == []
    h2, _, link2, _, _ = hold(media_enabled=False)
    h2.begin("c1", Task(), "support", OFFER).addCallback(got.append)
    assert got[-1] is None and link2.log == []


def test_confirmation_replaces_the_programme_and_fires_when_played():
    h, clock, link, _, digits = hold(callback_digit="1")
    h.begin("c1", Task(), "support", OFFER)
    clock.advance(40)
    link.on_digit("c1", "1")
    link.on_digit("zz", "1")  # a call we do not play to
    assert digits == [("c1", "1")]
    done = []
    h.confirm("c1").addCallback(done.append)
    assert link.log[-1] == ("play", "c1", ["en/callback_confirm"], True)
    clock.advance(10)
    assert link.log[-1] == ("play", "c1", ["en/callback_confirm"], True)  # nothing after it
    link.played.callback(True)
    assert done == [True]
    # the worker never says "played" (it died): the confirmation ends at the timeout
    h.begin("c2", Task(), "support", OFFER)
    late = []
    h.confirm("c2").addCallback(late.append)
    clock.advance(15)
    assert late == [None]


class Transport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.written: list[dict] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += [json.loads(x) for x in data.decode().splitlines()]

    def closeStdin(self) -> None:  # noqa: N802 - Twisted API
        self.closed = True

    def signalProcess(self, sig) -> None:  # noqa: N802 - Twisted API
        pass


class SpawningClock(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple] = []

    def spawnProcess(self, proto, executable, args, env=None, path=None):  # noqa: N802
        t = Transport(len(self.spawned) + 1)
        self.spawned.append((proto, args, t))
        proto.makeConnection(t)
        return t


def test_link_commands_replies_and_restart_on_the_same_ports():
    clock = SpawningClock()
    link = MediaLink(clock, PhoneSettings(enabled=True, media_ports="20000-20099"))
    link.start()
    proto, args, t = clock.spawned[0]
    assert args[1:3] == ["-m", "channels.phone.media_worker"] and "20000-20099" in args
    ports, digits = [], []
    link.on_digit = lambda k, d: digits.append((k, d))
    link.open("c1", "10.0.0.5", 40000, 8, rtp.PCMA, None, ["fr/welcome"]).addCallback(
        ports.append)
    assert t.written[-1] == {"op": "start", "key": "c1", "host": "10.0.0.5", "port": 40000,
                             "pt": 8, "codec": "alaw", "event": None, "play": ["fr/welcome"]}
    proto.outReceived(b'{"op":"started","key":"c1","port":20004}\n{"op":"digit",')
    proto.outReceived(b'"key":"c1","digit":"7"}\n')
    assert ports == [20004] and digits == [("c1", "7")]
    # the worker dies: restarted after a short delay, the stream asked again on port 20004
    clock.advance(60)
    proto.processEnded(Failure(RuntimeError("killed")))
    assert link.restarts == 1 and len(clock.spawned) == 1
    clock.advance(0.5)
    proto2, _, t2 = clock.spawned[1]
    assert t2.written == [{"op": "start", "key": "c1", "host": "10.0.0.5", "port": 40000,
                           "pt": 8, "codec": "alaw", "event": None, "play": ["fr/welcome"],
                           "local_port": 20004}]
    # a worker that keeps dying young: restarted less and less often (1 s, 2 s, ...)
    for delay in (1.0, 2.0):
        clock.spawned[-1][0].processEnded(Failure(RuntimeError("crash")))
        clock.advance(delay - 0.01)
        count = len(clock.spawned)
        clock.advance(0.01)
        assert len(clock.spawned) == count + 1
    proto2, _, t2 = clock.spawned[-1]
    # a stream the worker never opens: given up after START_TIMEOUT (the call gets 182)
    late = []
    link.open("c2", "10.0.0.6", 40002, 0, rtp.PCMU, None, []).addCallback(late.append)
    clock.advance(2.0)
    assert late == [None] and t2.written[-1] == {"op": "stop", "key": "c2"}
    stopped = []
    link.stop().addCallback(stopped.append)
    assert t2.closed and stopped == []
    proto2.processEnded(Failure(RuntimeError("exit")))
    assert stopped == [None] and len(clock.spawned) == 4  # not restarted when stopping
