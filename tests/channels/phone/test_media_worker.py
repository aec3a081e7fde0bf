"""The media worker process (media_worker.py) driven over its pipe as media.py drives it: RTP
to a receiver (payload type, 50 packets/s, continuous numbering, timing), prompts then music,
A-law, RFC 4733 digits back, latching to the caller's source address, stop, exit on EOF."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from channels.phone import g711, prompts, rtp
from tests.channels.phone.running import ROOT


class Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "channels.phone.media_worker"],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.read()["op"] == "ready"

    def send(self, **msg) -> None:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def read(self, op: str | None = None) -> dict:
        while True:
            msg = json.loads(self.proc.stdout.readline())
            if op is None or msg["op"] == op:
                return msg


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    if w.proc.poll() is None:
        w.proc.stdin.close()
        w.proc.wait(5)


def receiver() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2.0)
    return s


def collect(sock: socket.socket, seconds: float) -> list[tuple[float, rtp.Packet]]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        data, _ = sock.recvfrom(2048)
        out.append((time.monotonic(), rtp.parse(data)))
    return out


def test_stream_is_paced_numbered_and_plays_the_prompt_then_music(worker):
    rx = receiver()
    worker.send(op="start", key="a", host="127.0.0.1", port=rx.getsockname()[1], pt=0,
                codec="ulaw", event=None, play=["en/n_7"])
    assert worker.read("started")["port"] > 0
    got = collect(rx, 1.5)
    packets = [p for _, p in got]
    assert 70 <= len(packets) <= 80, len(packets)  # 50 a second (a late tick is caught up)
    assert {p.payload_type for p in packets} == {0} and len({p.ssrc for p in packets}) == 1
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    for a, b in zip(packets, packets[1:], strict=False):
        assert (b.sequence - a.sequence) & 0xFFFF == 1
        assert (b.timestamp - a.timestamp) & 0xFFFFFFFF == 160
    gaps = [b - a for (a, _), (b, _) in zip(got, got[1:], strict=False)]
    assert abs(statistics.mean(gaps) - 0.020) < 0.002, statistics.mean(gaps)
    assert statistics.median(gaps) == pytest.approx(0.020, abs=0.005)
    # the prompt first (its exact bytes), then the gap and the music
    seven = prompts.load(None)["en/n_7"]
    audio = b"".join(p.payload for p in packets)
    assert audio.startswith(seven[:160 * (len(seven) // 160)])
    assert len(set(audio[len(seven) + 4000:])) > 10  # music: not silence


def test_alaw_digits_and_latching(worker):
    rx = receiver()
    worker.send(op="start", key="b", host="127.0.0.1", port=rx.getsockname()[1], pt=8,
                codec="alaw", event=101, play=[])
    port = worker.read("started")["port"]
    first = rtp.parse(rx.recvfrom(2048)[0])
    assert first.payload_type == 8
    assert g711.decode_alaw(first.payload)  # A-law bytes of the music
    # the caller's RTP comes from another address (NAT): our stream follows it
    caller = receiver()
    for i, end in enumerate([False, False, True, True, True]):
        caller.sendto(rtp.build(101, 10 + i, 4000, 9, rtp.event_payload(3, end)),
                      ("127.0.0.1", port))
    assert worker.read("digit") == {"op": "digit", "key": "b", "digit": "3"}
    assert rtp.parse(caller.recvfrom(2048)[0]).payload_type == 8
    worker.send(op="play", key="b", play=["fr/n_2"], replace=True)
    assert worker.read("played")["key"] == "b"
    worker.send(op="stop", key="b")
    time.sleep(0.1)
    caller.settimeout(0.2)
    while True:  # drain what was in flight, then nothing more
        try:
            caller.recvfrom(2048)
        except TimeoutError:
            break


def test_worker_exits_when_its_pipe_closes(worker):
    worker.proc.stdin.close()
    assert worker.proc.wait(5) == 0
