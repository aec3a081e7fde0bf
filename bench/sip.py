"""Benchmark: calls/s the phone edge takes from INVITE to 182 Queued and then to CANCEL (487 +
200, ACK), driven by sipp, against Kamailio configured as a plain stateful responder
(`KAMAILIO_CFG` below, written to perf-queue.cfg at each run) on another loopback port, in
the same run.

    .venv/bin/python bench/sip.py [--calls N] [--concurrent L] [--db URL]

Our side is the real dispatcher (tests/channels/phone/server.py: the runtime's App, SQL store
with group commit, router, Calls): each call is committed as a phone task before its 182 and
abandoned (committed) before its 487. Kamailio keeps nothing. sipp runs closed-loop: at most
`--concurrent` calls open, new ones as fast as old ones finish, so the rate is what the server
sustains. Prints calls/s for both, their ratio, failed calls and sipp's response times; never
asserts on time.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.channels.phone import running  # noqa: E402

SCENARIO = running.SCENARIOS / "invite_cancel.xml"
RATE_CAP = 20000  # calls/s sipp may start; the concurrency limit decides the real rate
KAMAILIO_READY_TIMEOUT = 30.0
KAMAILIO_CFG = """#!KAMAILIO
debug=1
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}

loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    if (is_method("ACK")) {{
        t_check_trans();
        exit;
    }}
    if (is_method("INVITE") && $tt == $null) {{
        if (!t_newtran()) {{ sl_reply_error(); exit; }}
        t_reply("100", "Trying");
        t_reply("182", "Queued");
        t_set_fr(600000, 600000);
        t_suspend();
        exit;
    }}
    if (is_method("OPTIONS")) {{ sl_send_reply("200", "OK"); exit; }}
    sl_send_reply("403", "Forbidden");
}}
"""


def free_udp_port() -> int:
    return running.free_udp_port()


def options_answered(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        here = s.getsockname()[1]
        msg = (f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{here};branch=z9hG4bKping{time.monotonic_ns()}\r\n"
               "Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=b\r\n"
               "To: <sip:ping@127.0.0.1>\r\nCall-ID: ping@bench\r\nCSeq: 1 OPTIONS\r\n"
               "Content-Length: 0\r\n\r\n").encode()
        s.sendto(msg, ("127.0.0.1", port))
        try:
            return s.recv(65535).startswith(b"SIP/2.0 ")
        except OSError:
            return False


def start_kamailio(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_udp_port()
    cfg = tmp / "perf-queue.cfg"
    cfg.write_text(KAMAILIO_CFG.format(port=port))
    (tmp / "run").mkdir()
    log = open(tmp / "kamailio.log", "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(["kamailio", "-DD", "-E", "-f", str(cfg), "-Y", str(tmp / "run"),
                             "-m", "1024", "-M", "16"], stdout=log, stderr=log)
    deadline = time.monotonic() + KAMAILIO_READY_TIMEOUT
    while time.monotonic() < deadline:
        if options_answered(port):
            return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop_kamailio(proc)  # SIGTERM: the main process takes its children down with it
    raise RuntimeError(f"kamailio did not start; see {tmp / 'kamailio.log'}")


def stop_kamailio(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def steady_rate(rows: list[dict]) -> float:
    """Calls/s between the moments 10 % and 90 % of the successful calls were done (sipp's
    per-second statistics, interpolated): start-up and the wait for the last stragglers (a
    call whose answer was lost waits for -recv_timeout) do not count."""
    points = [(float(r["CurrentTime"].split()[-1]), int(r["SuccessfulCall(C)"])) for r in rows]
    total = points[-1][1]
    if total < 10:
        return 0.0

    def when(n: float) -> float:
        for (t0, c0), (t1, c1) in zip(points, points[1:], strict=False):
            if c1 >= n:
                return t0 + (t1 - t0) * ((n - c0) / (c1 - c0) if c1 != c0 else 1.0)
        return points[-1][0]

    low, high = 0.1 * total, 0.9 * total
    span = when(high) - when(low)
    return (high - low) / span if span > 0 else 0.0


def run_sipp(target: str, calls: int, concurrent: int, tmp: Path) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    stats = tmp / "stats.csv"
    cmd = ["sipp", "-sf", str(SCENARIO), "-s", "queue", "-i", "127.0.0.1",
           "-p", str(free_udp_port()), "-r", str(RATE_CAP), "-l", str(concurrent),
           "-m", str(calls), "-recv_timeout", "5s", "-timeout", "300s", "-timeout_error",
           "-nostdin", "-trace_stat", "-fd", "1", "-stf", str(stats), "-trace_err", target]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=400)
    wall = time.perf_counter() - t0
    with open(stats) as f:
        table = list(csv.reader(f, delimiter=";"))
    rows = [dict(zip(table[0], r, strict=False)) for r in table[1:]]
    last = rows[-1]
    return {"rc": done.returncode, "ok": int(last.get("SuccessfulCall(C)", 0)),
            "failed": int(last.get("FailedCall(C)", 0)),
            "retrans": int(last.get("Retransmissions(C)", 0)), "wall": wall,
            "rate": steady_rate(rows),
            "rtd1": last.get("ResponseTime1(C)", "?"), "rtd2": last.get("ResponseTime2(C)", "?")}


def show(name: str, r: dict) -> None:
    print(f"{name:<28} {r['rate']:8.0f} calls/s steady  ({r['ok']} ok, {r['failed']} failed, "
          f"{r['retrans']} retransmissions, {r['wall']:.1f} s in all; mean INVITE->182 "
          f"{r['rtd1']}, "
          f"CANCEL->487 {r['rtd2']}; sipp rc {r['rc']})", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=4000, help="calls against switchboard")
    ap.add_argument("--kamailio-calls", type=int, default=30000,
                    help="calls against Kamailio (more: it is faster, and the rate is taken "
                         "over the middle 80 %% of each run)")
    ap.add_argument("--concurrent", type=int, default=100)
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    args = ap.parse_args()
    for tool in ("sipp", "kamailio"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (Debian: sip-tester, kamailio)")
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-sip-"))
    url = args.db or f"sqlite:///{tmp / 'switchboard.db'}"
    server = running.start(url, {
        "settings": {"udp_port": 0, "tcp_port": -1, "queues": "queue=support",
                     "max_queue_wait": 600,
                     # every call comes from 127.0.0.1: lift the per-source INVITE budget
                     "invite_rate": 1e9, "invite_burst": 10**9},
        "queues": [{"name": "support"}], "quiet": True, "log": "WARNING"}, tmp / "server.log")
    kamailio = None
    try:
        kamailio, kport = start_kamailio(tmp)
        print(f"{args.calls} / {args.kamailio_calls} calls, at most {args.concurrent} open, "
              f"INVITE -> 182 Queued -> CANCEL -> 487/200 -> ACK (sipp {SCENARIO.name}); "
              f"files in {tmp}", flush=True)
        ours = run_sipp(f"127.0.0.1:{server.udp_port}", args.calls, args.concurrent, tmp / "ours")
        show("switchboard (SQLite commit)", ours)
        kam = run_sipp(f"127.0.0.1:{kport}", args.kamailio_calls, args.concurrent,
                       tmp / "kamailio")
        show("kamailio (stateful, no DB)", kam)
        if kam["rate"]:
            print(f"ratio switchboard / kamailio: {ours['rate'] / kam['rate']:.2f} "
                  f"(target >= 0.25)")
    finally:
        server.stop()
        if kamailio is not None:
            stop_kamailio(kamailio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
