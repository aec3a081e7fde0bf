"""Queue media over the real path: sipp as the caller (its SDP offer names this test's UDP
receiver), the real dispatcher with the phone edge and its media worker (server.py), sipp as the
agent's phone. What arrives at the caller's address is measured: RTP of the chosen payload type,
50 packets a second, continuous numbering, timing, not silence; the agent's 200 stops it; an
RFC 4733 digit sent from the caller's address books a callback (480, no abandon); a media
worker killed mid-call is restarted and the call hears media again from the same port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from channels.phone import g711, rtp
from tests.channels.phone import running
from tests.channels.phone.test_sipp import Phones
from tests.support import need_binary

pytestmark = pytest.mark.slow

QUEUES = {"hold": [], "pcma": [], "answer": ["moh-a"], "keep": []}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[running.Server]:
    need_binary("sipp")
    tmp = tmp_path_factory.mktemp("media-server")
    spec = {
        "settings": {"udp_port": 0, "tcp_port": 0, "digest_algorithms": "MD5,SHA-256",
                     "register_min": 1, "queued_interval": 30.0, "announce_interval": 1.0,
                     "callback_digit": "1", "queues": ",".join(f"{q}={q}" for q in QUEUES)},
        "queues": [{"name": q, "wrap_up_seconds": 1.0, "offer_timeout": 20.0} for q in QUEUES],
        "agents": [{"id": a, "user": a, "password": running.PASSWORD, "skills": {},
                    "queues": [q]} for q, agents in QUEUES.items() for a in agents],
    }
    s = running.start(f"sqlite:///{tmp / 'switchboard.db'}", spec, tmp / "server.log")
    yield s
    s.stop()


class Receiver:
    """The caller's RTP address: records (arrival, packet, source)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def collect(self, seconds: float, first_timeout: float = 10.0) -> list[tuple]:
        out = []
        self.sock.settimeout(first_timeout)
        end = None
        while end is None or time.monotonic() < end:
            try:
                data, source = self.sock.recvfrom(2048)
            except TimeoutError:
                break
            now = time.monotonic()
            if end is None:
                end = now + seconds
                self.sock.settimeout(0.5)
            out.append((now, rtp.parse(data), source))
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def phones(server, tmp_path) -> Iterator:
    made = []

    def make(queue: str) -> Phones:
        p = Phones(tmp_path, server, queue)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def check_stream(got: list[tuple], payload_type: int) -> dict:
    packets = [p for _, p, _ in got]
    assert {p.payload_type for p in packets} == {payload_type}
    assert len({p.ssrc for p in packets}) == 1
    for a, b in zip(packets, packets[1:], strict=False):
        assert (b.sequence - a.sequence) & 0xFFFF == 1, "a packet lost or reordered"
        assert (b.timestamp - a.timestamp) & 0xFFFFFFFF == 160
    arrivals = [t for t, _, _ in got]
    span = arrivals[-1] - arrivals[0]
    rate = (len(arrivals) - 1) / span
    # arrival jitter against the sender's clock: deviation from a 20 ms grid (RFC 3550 A.8's
    # transit differences, without the smoothing)
    transit = [t - i * 0.020 for i, t in enumerate(arrivals)]
    base = statistics.median(transit)
    deviations = sorted(abs(x - base) * 1000 for x in transit)
    return {"rate": rate, "p90_ms": deviations[int(0.9 * len(deviations))],
            "worst_ms": deviations[-1], "packets": len(packets)}


@pytest.mark.parametrize(("queue", "codec"), [("hold", 0), ("pcma", 8)])
def test_caller_hears_music_and_prompts_over_rtp(phones, receiver, queue, codec):
    p = phones(queue)
    caller = p.caller("customer_media_hold.xml", "-key", "rtp_port", str(receiver.port),
                      "-key", "codec", str(codec), "-d", "2500")
    got = receiver.collect(1.5)
    assert got, caller.logs()
    figures = check_stream(got, codec)
    assert 48 <= figures["rate"] <= 52, figures
    # Paced on a 20 ms grid: a sender that bursts or drifts is tens of ms off for most packets,
    # while this shared 2-core machine, loaded or with its CPU taken by the host, puts a paced
    # stream's p90 at 5-7 ms (seen in CI runs; ±5 ms is what an idle machine gives); never a
    # resync (a tick 200 ms late). The jitter at 100 callers is measured by bench/media.py: a
    # test asserts the pacing, not a speed.
    assert figures["p90_ms"] <= 15.0 and figures["worst_ms"] < 200, figures
    decode = g711.decode_ulaw if codec == 0 else g711.decode_alaw
    pcm = decode(b"".join(p.payload for _, p, _ in got))
    loud = sum(1 for i in range(0, len(pcm), 2) if abs(int.from_bytes(pcm[i:i + 2], "little",
                                                                     signed=True)) > 500)
    assert loud > len(pcm) // 2 // 10, "mostly silence"
    assert caller.wait() == 0, caller.logs()
    text = "".join(m.read_text(errors="replace") for m in p.tmp.glob("caller-*/*_messages.log"))
    assert "183 Session Progress" in text and f"RTP/AVP {codec} 101" in text
    # after the CANCEL our stream stops
    receiver.sock.settimeout(0.3)
    time.sleep(0.3)
    with pytest.raises(TimeoutError):
        while True:
            receiver.sock.recvfrom(2048)


def test_agent_answer_takes_the_media_and_ours_stops(phones, receiver):
    p = phones("answer")
    caller = p.caller("customer_media_call.xml", "-key", "rtp_port", str(receiver.port),
                      "-key", "codec", "0")
    assert receiver.collect(1.0), caller.logs()
    agent = p.agent("moh-a", "agent_answer.xml")
    p.server.wait_for("call.answered", agent_id="moh-a")
    time.sleep(0.5)  # what was in flight, and the server's turn on a busy machine
    receiver.sock.settimeout(0.05)
    with pytest.raises(TimeoutError):
        while True:
            receiver.sock.recvfrom(2048)
    receiver.sock.settimeout(0.6)
    with pytest.raises(TimeoutError):
        receiver.sock.recvfrom(2048)
    assert caller.wait() == 0, caller.logs()
    assert agent.wait() == 0, agent.logs()


def test_digit_books_a_callback_and_ends_the_call(phones, receiver):
    p = phones("keep")
    caller = p.caller("customer_media_callback.xml", "-key", "rtp_port", str(receiver.port),
                      "-key", "codec", "0")
    got = receiver.collect(0.5)
    assert got, caller.logs()
    ours = got[0][2]  # our media port: where the digit goes, from the address in our SDP offer
    for i, end in enumerate((False, False, True, True, True)):
        receiver.sock.sendto(rtp.build(101, 100 + i, 8000, 77, rtp.event_payload(1, end,
                                                                                 duration=160 * (i + 1))), ours)
    assert caller.wait(30) == 0, caller.logs()
    task_id, _, _ = p.task()
    requested = p.server.wait_for("callback.requested", task_id=task_id)
    assert requested["data"]["kept"] is True
    assert "task.abandoned" not in [e["kind"] for e in p.server.events
                                    if e["task_id"] == task_id]
    text = "".join(m.read_text(errors="replace") for m in p.tmp.glob("caller-*/*_messages.log"))
    assert "480 Temporarily Unavailable (callback booked)" in text


def media_worker_pid(server: running.Server) -> int:
    """The media worker: the child of the server's process running media_worker."""
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"channels.phone.media_worker" in cmdline:
            return int(child)
    raise AssertionError(f"no media worker among {children}")


def test_worker_killed_is_restarted_and_the_call_hears_media_again(phones, receiver, server):
    p = phones("hold")
    caller = p.caller("customer_media_hold.xml", "-key", "rtp_port", str(receiver.port),
                      "-key", "codec", "0", "-d", "5000")
    before = receiver.collect(0.5)
    assert before, caller.logs()
    old = media_worker_pid(server)
    os.kill(old, signal.SIGKILL)
    time.sleep(0.2)
    receiver.sock.settimeout(0.05)
    with contextlib.suppress(TimeoutError):
        while True:  # what was sent before the kill
            receiver.sock.recvfrom(2048)
    after = receiver.collect(0.5, first_timeout=5.0)
    assert after, "no media after the worker's restart"
    assert after[0][2] == before[0][2]  # from the same port: the one our 183 announced
    assert media_worker_pid(server) != old
    assert caller.wait() == 0, caller.logs()
