"""Benchmark: queue media — callers on hold (music, and a position announcement to every caller
every few seconds) streamed by the media worker (channels/phone/media_worker.py, the process the
phone edge runs), and what it costs routing.

    .venv/bin/python bench/media.py [--callers 50,100,200] [--seconds 8] [--repeats 3] [--json]

Part 1, per number of callers: one worker, that many streams to a receiver in this process
(one UDP socket, streams told apart by SSRC); per stream the RTP interarrival jitter (RFC 3550
§6.4.1, the J estimator, in ms), the worst deviation of an arrival from its stream's 20 ms grid
(ms: p99, p99.9, max over all packets, and the share within ±5 ms), the loss (sequence numbers never seen), the packet rate; the worker's CPU per caller (% of
one core) from its own process time. Part 2: routing decision latency (bench/routing.py, one
fresh process per run, its p99) with 100 callers on hold and with none, alternating. Medians of
`--repeats` runs; the load average is printed before and after. Never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from channels.phone import rtp  # noqa: E402

ANNOUNCE_EVERY = 5.0  # seconds: every caller gets the position announcement this often
ANNOUNCEMENT = ["en/you_are_number", "en/n_3", "en/in_queue", "en/expected_wait", "en/min_2"]
WARM_UP = 1.0


NICE = ["--nice", "-10"]  # as the phone edge runs it (`media_nice`); --nice 0 to compare


class Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "channels.phone.media_worker",
                                      *NICE],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.sel = selectors.DefaultSelector()
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buf = b""
        self.read_until("ready")

    def send(self, **msg) -> None:
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def messages(self) -> list[dict]:
        try:
            data = os.read(self.proc.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            data = b""
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(x) for x in lines if x.strip()]

    def read_until(self, op: str, count: int = 1, timeout: float = 20.0) -> list[dict]:
        got: list[dict] = []
        end = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < end:
            got += [m for m in self.messages() if m["op"] == op]
            time.sleep(0.005)
        if len(got) < count:
            raise SystemExit(f"media worker: {len(got)}/{count} {op} in {timeout}s")
        return got

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


def receiver() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def start_callers(worker: Worker, sock: socket.socket, n: int) -> None:
    port = sock.getsockname()[1]
    for i in range(n):
        worker.send(op="start", key=f"c{i}", host="127.0.0.1", port=port, pt=0, codec="ulaw",
                    event=101, play=["en/welcome"])
    worker.read_until("started", n)


def hold(n: int, seconds: float) -> dict:
    """n callers on hold for `seconds`: jitter, loss, rate, worker CPU."""
    worker = Worker()
    sock = receiver()
    try:
        start_callers(worker, sock, n)
        streams: dict[int, dict] = {}
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        t0 = time.monotonic()
        measuring = False
        next_announce = t0 + ANNOUNCE_EVERY
        cpu0 = 0.0
        late: list[float] = []  # the worker's own: how late its worst tick of each 5 s was
        end = t0 + WARM_UP + seconds
        while (now := time.monotonic()) < end:
            if not measuring and now >= t0 + WARM_UP:
                measuring, cpu0, m0 = True, worker.cpu_seconds(), now
                streams.clear()
            for m in worker.messages():
                if m["op"] == "stats" and measuring:
                    late.append(m["late_max_ms"])
            if now >= next_announce:
                for i in range(n):
                    worker.send(op="play", key=f"c{i}", play=ANNOUNCEMENT)
                next_announce += ANNOUNCE_EVERY
            sel.select(0.05)
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                arrival = time.monotonic()
                p = rtp.parse(data)
                if p is None or not measuring:
                    continue
                s = streams.get(p.ssrc)
                if s is None:
                    streams[p.ssrc] = {"first_seq": p.sequence, "last_seq": p.sequence,
                                       "count": 1, "prev": (arrival, p.timestamp), "j": 0.0,
                                       "t0": arrival, "ts0": p.timestamp, "offsets": [0.0]}
                    continue
                s["count"] += 1
                s["last_seq"] = p.sequence  # in order on loopback
                prev_arrival, prev_ts = s["prev"]
                d = (arrival - prev_arrival) - ((p.timestamp - prev_ts) & 0xFFFFFFFF) / 8000
                s["j"] += (abs(d) - s["j"]) / 16
                s["prev"] = (arrival, p.timestamp)
                s["offsets"].append((arrival - s["t0"])
                                    - ((p.timestamp - s["ts0"]) & 0xFFFFFFFF) / 8000)
        elapsed = time.monotonic() - m0
        cpu = worker.cpu_seconds() - cpu0
        jitters, worst, lost, expected = [], [], 0, 0
        for s in streams.values():
            span = ((s["last_seq"] - s["first_seq"]) & 0xFFFF) + 1
            expected += span
            lost += span - s["count"]
            jitters.append(s["j"] * 1000)
            base = statistics.median(s["offsets"])
            worst.extend(abs(o - base) * 1000 for o in s["offsets"])
        received = sum(s["count"] for s in streams.values())
        return {
            "callers": n,
            "streams_seen": len(streams),
            "packets_per_second_per_caller": round(received / elapsed / max(1, len(streams)), 2),
            "jitter_ms_mean": round(statistics.fmean(jitters), 3) if jitters else None,
            "jitter_ms_max": round(max(jitters), 3) if jitters else None,
            "deviation_ms_p99": round(pct(worst, 0.99), 3) if worst else None,
            "deviation_ms_p999": round(pct(worst, 0.999), 3) if worst else None,
            "within_5ms_percent": round(100 * sum(1 for w in worst if w <= 5.0) / len(worst), 3)
            if worst else None,
            "deviation_ms_max": round(max(worst), 3) if worst else None,
            "worker_late_ms_max": max(late) if late else None,
            "loss_percent": round(100 * lost / expected, 4) if expected else None,
            "worker_cpu_percent": round(100 * cpu / elapsed, 1),
            "cpu_percent_per_caller": round(100 * cpu / elapsed / n, 3),
        }
    finally:
        worker.close()
        sock.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def routing_p99(decisions: int) -> float:
    """p99 of one routing decision (µs), bench/routing.py's flow in a fresh process."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "routing.py"), "--one", "1000",
                           "--decisions", str(decisions)], capture_output=True, text=True,
                          check=True, cwd=ROOT, preexec_fn=lambda: os.nice(-os.nice(0)))
    return json.loads(done.stdout)["p99_ns"] / 1000


def routing_under_media(callers: int, decisions: int, repeats: int) -> dict:
    quiet, loaded = [], []
    for _ in range(repeats):
        quiet.append(routing_p99(decisions))
        worker = Worker()
        sock = receiver()
        try:
            start_callers(worker, sock, callers)  # nobody reads: the kernel drops them
            loaded.append(routing_p99(decisions))
        finally:
            worker.close()
            sock.close()
    return {"callers": callers, "p99_us_without_media": round(statistics.median(quiet), 2),
            "p99_us_with_media": round(statistics.median(loaded), 2),
            "ratio": round(statistics.median(loaded) / statistics.median(quiet), 3)}


def medians(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for key, value in runs[0].items():
        if key != "callers" and isinstance(value, int | float):
            vals = [r[key] for r in runs if r[key] is not None]
            out[key] = round(statistics.median(vals), 4) if vals else None
    out["repeats"] = len(runs)
    return out


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--callers", default="50,100,200")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decisions", type=int, default=20000)
    ap.add_argument("--nice", type=int, default=-10, help="the worker's nice value")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    NICE[1] = str(args.nice)
    if args.nice:  # the receiver (the callers' side) too, so that it measures the worker
        try:
            os.nice(args.nice)
        except OSError:
            print("note: cannot change priorities here (not root): measured as is",
                  file=sys.stderr)
    result: dict = {"load_before": load(), "cpus": os.cpu_count(), "hold": []}
    for n in (int(x) for x in args.callers.split(",")):
        runs = [hold(n, args.seconds) for _ in range(args.repeats)]
        result["hold"].append(medians(runs))
        if not args.json:
            r = result["hold"][-1]
            print(f"{n:>4} callers: {r['packets_per_second_per_caller']} pkt/s each, jitter "
                  f"mean {r['jitter_ms_mean']} ms (max {r['jitter_ms_max']}), deviation p99 "
                  f"{r['deviation_ms_p99']} ms (p99.9 {r['deviation_ms_p999']}, max "
                  f"{r['deviation_ms_max']}; {r['within_5ms_percent']} % within 5 ms), loss "
                  f"{r['loss_percent']} %, worker's own worst tick {r['worker_late_ms_max']} ms late, worker {r['worker_cpu_percent']} % CPU = "
                  f"{r['cpu_percent_per_caller']} % per caller", flush=True)
    result["routing"] = routing_under_media(100, args.decisions, args.repeats)
    result["load_after"] = load()
    if args.json:
        print(json.dumps(result))
    else:
        r = result["routing"]
        print(f"routing decision p99: {r['p99_us_without_media']} us without media, "
              f"{r['p99_us_with_media']} us with {r['callers']} callers on hold "
              f"(x{r['ratio']})")
        print(f"load average before {result['load_before']}, after {result['load_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
