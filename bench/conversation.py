"""Opening a task with a long e-mail thread: time to first paint of the conversation in the
agent's page, and the bytes it costs.

A benchmark, not a test: it prints figures and never fails on time. It runs the product as
users deploy it: the real `switchboard serve` on SQLite (or `--database URL`), a thread of N
messages (default 50: one new message, then replies threaded by In-Reply-To) sent with smtplib
to its SMTP port, an agent signed in to the console page in headless Chromium (Debian's, driven
by Playwright) who accepted the task. Each repeat reloads the page (the desk opens on the held
task, as after a restart of the browser) and reads the page's own marks:

- `open -> painted`: from the navigation's start to the frame after the newest page of the
  conversation (30 entries) is drawn;
- `asked -> painted`: from the `conversation` request to that frame;
- bytes: the `conversation` answer on the WebSocket, and the HTTP bytes of the page.

The peer, in the same run and the same browser: the same messages as one static HTML page
(what a server-rendered thread would send), served by the standard library's HTTP server; its
`open -> painted` is the time to its first contentful paint. Ratios are ours / peer.

    .venv/bin/python bench/conversation.py [--messages N] [--repeats R]
                                           [--databases sqlite,postgres] [--json]

PostgreSQL: a database made for the run on `$SWITCHBOARD_BENCH_PG_URL` (default
postgresql+psycopg2://postgres@127.0.0.1:5432/test), dropped afterwards.
"""

from __future__ import annotations

import argparse
import functools
import html
import http.server
import json
import os
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import jwt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SECRET = b"bench-conversation-" + b"x" * 40
PG_URL = os.environ.get("SWITCHBOARD_BENCH_PG_URL",
                        "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
BODY = ("Hello,\n\nthis is message {n} of our exchange about order 1234. The parcel was due on "
        "Monday; the carrier's tracking still says 'in transit' and nobody answers the phone "
        "there. Could you look into it and tell me when it will arrive?\n\nThank you,\nAnn\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("switchboard serve exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"switchboard serve did not open port {port}")


def token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": "agent", "iat": now, "exp": now + 3600,
                       "iss": "switchboard", "aud": "switchboard-console"}, SECRET,
                      algorithm="HS256")


def switchboard() -> list[str]:
    script = Path(sys.executable).with_name("switchboard")
    return [str(script)] if script.exists() else [sys.executable, "-m",
                                                  "dispatcher.runtime.cli"]


def prepare(url: str) -> None:
    from dispatcher.domain.agents import Agent
    from dispatcher.domain.queues import Queue
    from dispatcher.domain.tasks import Channel
    from dispatcher.storage import schema
    from tests.dispatcher.storage.wiring import wire

    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(w.store.put_queue(Queue("support")))
        w.wait(w.store.put_agent(Agent("a1", name="Alex Agent", queues={"support"},
                                       capacity={Channel.EMAIL: 3},
                                       channels={Channel.EMAIL})))
    finally:
        w.close()


def thread(port: int, count: int) -> list[EmailMessage]:
    sent: list[EmailMessage] = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        for n in range(count):
            msg = EmailMessage()
            msg["From"], msg["To"] = "Ann Example <ann@customer.test>", "support@example.com"
            msg["Subject"] = "Order 1234 never arrived" if n == 0 else \
                "Re: Order 1234 never arrived"
            msg["Message-ID"] = make_msgid(domain="customer.test")
            if sent:
                msg["In-Reply-To"] = sent[-1]["Message-ID"]
                msg["References"] = " ".join(m["Message-ID"] for m in sent[-10:])
            msg.set_content(BODY.format(n=n + 1))
            s.send_message(msg)
            sent.append(msg)
    return sent


def static_page(messages: list[EmailMessage]) -> str:
    items = "".join(
        f"<li><b>{html.escape(str(m['From']))}</b> <span>{html.escape(str(m['Subject']))}"
        f"</span><pre>{html.escape(m.get_content())}</pre></li>" for m in messages)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>thread</title></head>"
            f"<body><ol>{items}</ol></body></html>")


@contextmanager
def database(kind: str, tmp: Path):
    """A new, empty database of this kind for one run."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'switchboard.db'}"
        return
    import sqlalchemy as sa

    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"sb_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(PG_URL).set(database=name).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def measure(args: argparse.Namespace, kind: str) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-conversation-"))
    try:
        with database(kind, tmp) as url:
            return {"database": kind, **_measure(args, tmp, url)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(args: argparse.Namespace, tmp: Path, url: str) -> dict:
    from playwright.sync_api import sync_playwright

    prepare(url)
    (tmp / "console.secret").write_bytes(SECRET)
    smtp, ws, web = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_DATABASE_URL=url, SWITCHBOARD_SERVER_HTTP_PORT=str(web),
               SWITCHBOARD_EMAIL_SMTP_PORT=str(smtp),
               SWITCHBOARD_EMAIL_RECIPIENTS="support@example.com=support",
               SWITCHBOARD_CONSOLE_PORT=str(ws),
               SWITCHBOARD_CONSOLE_JWT_SECRET_FILE=str(tmp / "console.secret"),
               SWITCHBOARD_CONSOLE_ALLOWED_ORIGINS=f"http://127.0.0.1:{web}",
               SWITCHBOARD_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([*switchboard(), "serve"], cwd=tmp, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peer_dir = tmp / "peer"
    peer_dir.mkdir()
    peer_server = None
    try:
        for port in (smtp, ws, web):
            wait_port(port, proc)
        messages = thread(smtp, args.messages)
        (peer_dir / "thread.html").write_text(static_page(messages), encoding="utf-8")
        handler = functools.partial(_Quiet, directory=str(peer_dir))
        peer_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=peer_server.serve_forever, daemon=True).start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=CHROMIUM_ARGS)
            try:
                ours = _ours(browser, web, args)
                peer = _peer(browser, peer_server.server_address[1], args)
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(20)
        if peer_server is not None:
            peer_server.shutdown()
    return {"messages": args.messages, "repeats": args.repeats, **ours, **peer,
            "ratio_open_to_paint": ours["open_to_paint_ms"] / peer["peer_first_paint_ms"]}


def _ours(browser, web: int, args: argparse.Namespace) -> dict:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    frames: list[int] = []

    def on_socket(ws) -> None:
        ws.on("framereceived", lambda payload: frames.append(len(payload)) if
              '"type":"conversation"' in str(payload)[:40] else None)
    page.on("websocket", on_socket)
    page.goto(f"http://127.0.0.1:{web}/")
    page.click("#token-box summary")
    page.fill("#token", token("a1"))
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#go-available")
    page.click("#go-available")
    page.wait_for_selector("#accept", state="visible", timeout=30_000)
    page.click("#accept")
    page.wait_for_selector("#conv-list > li.entry", timeout=30_000)
    opened, asked, http_bytes = [], [], []
    for _ in range(args.repeats):
        frames.clear()
        page.reload()
        _until(page, "() => performance.getEntriesByName('conversation-painted').length")
        marks = page.evaluate("""() => ({
            painted: performance.getEntriesByName('conversation-painted')[0].startTime,
            asked: performance.getEntriesByName('conversation-asked')[0].startTime,
            bytes: performance.getEntriesByType('resource').concat(
                performance.getEntriesByType('navigation')).reduce(
                (n, e) => n + (e.transferSize || 0), 0)})""")
        opened.append(marks["painted"])
        asked.append(marks["painted"] - marks["asked"])
        http_bytes.append(marks["bytes"])
    entries = page.locator("#conv-list > li.entry").count()
    page.close()
    return {"open_to_paint_ms": statistics.median(opened),
            "asked_to_paint_ms": statistics.median(asked),
            "entries_shown": entries, "conversation_frame_bytes": frames[0] if frames else None,
            "page_http_bytes": statistics.median(http_bytes)}


def _peer(browser, port: int, args: argparse.Namespace) -> dict:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    painted, sizes = [], []
    for n in range(args.repeats):  # a new address each time: never a cached copy
        page.goto(f"http://127.0.0.1:{port}/thread.html?open={n}")
        _until(page, "() => performance.getEntriesByName('first-contentful-paint').length")
        got = page.evaluate("""() => ({
            fcp: performance.getEntriesByName('first-contentful-paint')[0].startTime,
            bytes: performance.getEntriesByType('navigation')[0].transferSize})""")
        painted.append(got["fcp"])
        sizes.append(got["bytes"])
    page.close()
    return {"peer_first_paint_ms": statistics.median(painted),
            "peer_http_bytes": statistics.median(sizes)}


def _until(page, predicate: str, seconds: float = 30.0) -> None:
    """Poll a predicate with `evaluate` (the page's CSP forbids the eval that
    `wait_for_function` would use)."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {predicate}")
        time.sleep(0.02)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--databases", default="sqlite,postgres",
                        help="comma-separated: sqlite, postgres (each a new database)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.messages < 1 or args.repeats < 1:
        parser.error("--messages and --repeats are at least 1")
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    if not kinds or set(kinds) - {"sqlite", "postgres"}:
        parser.error("--databases is a list of sqlite, postgres")
    runs = [measure(args, kind) for kind in kinds]
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"load_1min": load, "runs": runs}, indent=2))
        return
    for f in runs:
        print(f"conversation of {f['messages']} messages ({f['database']}), "
              f"median of {f['repeats']} page opens, load {load:.2f}")
        print(f"  open -> painted     {f['open_to_paint_ms']:8.1f} ms   "
              f"(static peer first paint {f['peer_first_paint_ms']:.1f} ms, "
              f"ratio {f['ratio_open_to_paint']:.2f})")
        print(f"  asked -> painted    {f['asked_to_paint_ms']:8.1f} ms   "
              f"({f['entries_shown']} entries shown)")
        print(f"  conversation frame  {f['conversation_frame_bytes']} bytes; page over HTTP "
              f"{f['page_http_bytes']:.0f} bytes (static peer {f['peer_http_bytes']})")


if __name__ == "__main__":
    main()
