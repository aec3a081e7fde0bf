"""The media worker: a process of its own that streams RTP to queued callers (music on hold and
prompts) and reads their RTP for RFC 4733 digits, so the reactor that routes never blocks on
media.

    python -m channels.phone.media_worker --host H [--ports A-B] [--prompts DIR] [--music F]

Sits under the phone edge: media.py (the parent) spawns it and drives it over stdin/stdout,
one JSON object a line. Parent -> worker:
  {"op": "start", "key", "host", "port", "pt", "codec": "ulaw"|"alaw", "event": pt|null,
   "play": [prompt names], "local_port": n (optional: rebind after a restart)}
  {"op": "play", "key", "play": [names], "replace": bool}   prompts, then music again
  {"op": "stop", "key"}
Worker -> parent:
  {"op": "started", "key", "port"} | {"op": "failed", "key", "error"}
  {"op": "digit", "key", "digit"}     once per RFC 4733 event
  {"op": "played", "key"}             the prompts asked for are over (music again)
  {"op": "stats", "streams", "late_max_ms", "resyncs", "cpu"}   every STATS_SECONDS

Promises: one clock loop sends every stream's packet each 20 ms (160 samples), sleeping to
absolute deadlines on time.monotonic(); a tick more than RESYNC late (the machine stalled) is
not caught up with a burst: the clock restarts from now and the RTP timestamps jump by the
time lost (RFC 3550 timing stays true). Symmetric RTP: the first RTP packet from the caller
that comes from another address than the SDP's moves our stream there (latching, for callers
behind NAT). Exits when stdin closes (the parent is gone).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field

from . import g711, music, prompts, rtp

TICK = rtp.PTIME_MS / 1000
PACKET = rtp.SAMPLES_PER_PACKET
RESYNC = 0.2  # seconds late after which the clock restarts from now
STATS_SECONDS = 5.0
GAP = bytes([g711.SILENCE_ULAW]) * (PACKET * 10)  # 200 ms between prompts
SILENCE = bytes([g711.SILENCE_ULAW]) * PACKET


@dataclass(eq=False)
class Caller:
    key: str
    sock: socket.socket
    dest: tuple[str, int]
    stream: rtp.Stream
    alaw: bool
    dtmf: rtp.DtmfReceiver | None
    pending: collections.deque = field(default_factory=collections.deque)  # µ-law chunks
    chunk: bytes = b""
    offset: int = 0
    music_at: int = 0
    latched: bool = False
    report_played: bool = False

    def payload(self, tune: bytes) -> bytes:
        if self.offset >= len(self.chunk) and self.pending:
            self.chunk, self.offset = self.pending.popleft(), 0
        if self.offset < len(self.chunk):
            data = self.chunk[self.offset:self.offset + PACKET]
            self.offset += PACKET
            if len(data) < PACKET:
                data += SILENCE[: PACKET - len(data)]
        else:
            if self.report_played:
                self.report_played = False
                emit({"op": "played", "key": self.key})
            end = self.music_at + PACKET
            data = tune[self.music_at:end]
            self.music_at = 0 if end >= len(tune) else end
        return data.translate(g711.ULAW_TO_ALAW) if self.alaw else data


def emit(message: dict) -> None:
    data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
    try:
        os.write(sys.stdout.fileno(), data)
    except OSError:
        raise SystemExit(0) from None


def parse_ports(spec: str) -> range | None:
    if not spec:
        return None
    low, _, high = spec.partition("-")
    return range(int(low), int(high or low) + 1)


class Worker:
    def __init__(self, host: str, ports: range | None, prompt_set: dict[str, bytes],
                 tune: bytes) -> None:
        self.host = host
        self.ports = ports
        self.prompts = prompt_set
        self.tune = tune
        self.callers: dict[str, Caller] = {}
        self.sel = selectors.DefaultSelector()
        self.inbuf = b""
        self.running = True
        self.late_max = 0.0
        self.resyncs = 0

    # -------------------------------------------------------------- commands

    def command(self, msg: dict) -> None:
        op, key = msg.get("op"), str(msg.get("key"))
        if op == "start":
            self.start(key, msg)
        elif op == "play" and key in self.callers:
            self.play(self.callers[key], msg.get("play") or [], bool(msg.get("replace")))
        elif op == "stop":
            self.stop(key)

    def _bind(self, wanted: int | None) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        candidates = [wanted] if wanted else (list(self.ports) if self.ports else [0])
        for port in candidates:
            try:
                sock.bind((self.host, port))
                break
            except OSError:
                continue
        else:
            sock.close()
            raise OSError("no free media port")
        sock.setblocking(False)
        return sock

    def start(self, key: str, msg: dict) -> None:
        self.stop(key)
        try:
            sock = self._bind(msg.get("local_port"))
        except OSError as e:
            emit({"op": "failed", "key": key, "error": str(e)})
            return
        event = msg.get("event")
        caller = Caller(key, sock, (msg["host"], int(msg["port"])), rtp.Stream(int(msg["pt"])),
                        msg.get("codec") == "alaw",
                        rtp.DtmfReceiver(int(event)) if event is not None else None)
        self.callers[key] = caller
        self.sel.register(sock, selectors.EVENT_READ, caller)
        self.play(caller, msg.get("play") or [], False, report=False)
        emit({"op": "started", "key": key, "port": sock.getsockname()[1]})

    def play(self, caller: Caller, names: list[str], replace: bool, report: bool = True) -> None:
        if replace:
            caller.pending.clear()
            caller.chunk, caller.offset = b"", 0
        for name in names:
            audio = self.prompts.get(name)
            if audio:
                caller.pending.append(audio)
                caller.pending.append(GAP[: PACKET * 2])
        if caller.pending:
            caller.pending.append(GAP)
        caller.report_played = report

    def stop(self, key: str) -> None:
        caller = self.callers.pop(key, None)
        if caller is not None:
            self.sel.unregister(caller.sock)
            caller.sock.close()

    # -------------------------------------------------------------- input

    def read_commands(self) -> None:
        try:
            data = os.read(sys.stdin.fileno(), 65536)
        except BlockingIOError:
            return
        if not data:
            self.running = False
            return
        self.inbuf += data
        *lines, self.inbuf = self.inbuf.split(b"\n")
        for line in lines:
            if line.strip():
                try:
                    self.command(json.loads(line))
                except (ValueError, KeyError, TypeError) as e:
                    print(f"media worker: bad command {line[:200]!r}: {e}", file=sys.stderr)

    def read_rtp(self, caller: Caller) -> None:
        for _ in range(32):
            try:
                data, source = caller.sock.recvfrom(2048)
            except (BlockingIOError, ConnectionRefusedError):
                return
            except OSError:
                return
            packet = rtp.parse(data)
            if packet is None:
                continue
            if not caller.latched:
                caller.latched = True
                if source[:2] != caller.dest:
                    caller.dest = source[:2]
            if caller.dtmf is not None:
                digit = caller.dtmf.packet(packet)
                if digit:
                    for d in digit:
                        emit({"op": "digit", "key": caller.key, "digit": d})

    # -------------------------------------------------------------- the clock

    def tick(self) -> None:
        tune = self.tune
        for caller in list(self.callers.values()):
            # OSError: ICMP unreachable from an earlier packet, a full buffer: next tick
            with contextlib.suppress(OSError):
                caller.sock.sendto(caller.stream.packet(caller.payload(tune)), caller.dest)

    def run(self) -> None:
        os.set_blocking(sys.stdin.fileno(), False)
        self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
        deadline = time.monotonic() + TICK
        next_stats = time.monotonic() + STATS_SECONDS
        while self.running:
            wait = deadline - time.monotonic()
            if wait > 0:
                for key, _ in self.sel.select(wait):
                    if key.data is None:
                        self.read_commands()
                    else:
                        self.read_rtp(key.data)
                continue
            late = -wait
            if late > RESYNC:
                self.resyncs += 1
                skipped = int(late / TICK)
                for caller in self.callers.values():  # time lost: timestamps jump
                    caller.stream.timestamp = (caller.stream.timestamp + skipped * PACKET) \
                        & 0xFFFFFFFF
                deadline = time.monotonic()
            self.late_max = max(self.late_max, late)
            self.tick()
            deadline += TICK
            if deadline >= next_stats:
                emit({"op": "stats", "streams": len(self.callers),
                      "late_max_ms": round(self.late_max * 1000, 2), "resyncs": self.resyncs,
                      "cpu": round(time.process_time(), 3)})
                self.late_max = 0.0
                next_stats += STATS_SECONDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m channels.phone.media_worker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ports", default="")
    parser.add_argument("--prompts", default="")
    parser.add_argument("--music", default="")
    parser.add_argument("--nice", type=int, default=0, help="e.g. -10: a higher priority")
    args = parser.parse_args(argv)
    if args.nice:
        # ahead of the busy processes of the machine (CAP_SYS_NICE or root; else as it is):
        # its deadlines are 20 ms apart, the router's work is not
        with contextlib.suppress(OSError):
            os.nice(args.nice)
    worker = Worker(args.host, parse_ports(args.ports), prompts.load(args.prompts or None),
                    music.load(args.music or None))
    emit({"op": "ready"})
    with contextlib.suppress(KeyboardInterrupt):
        worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
