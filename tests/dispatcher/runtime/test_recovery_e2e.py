"""A crash with calls waiting, end to end: the real `switchboard serve` (SIP and CTI in the phone
edge, the console) on SQLite and on PostgreSQL; sipp places three calls that wait in the queue
(no agent), a PBX reports a fourth over the CTI's HTTP API; the server is SIGKILLed and started
again on the same database. What the product then says, read as an operator reads it (`/healthz`,
`switchboard tasks list/show --json`, `switchboard report --format json`) and as an agent sees
it (the console WebSocket): the three SIP calls, whose dialogs died with the process, are
abandoned (`call_lost`) with the time they waited before the crash, not the time the server
was down, and this is committed before `/healthz` answers; the CTI call still waits (its PBX
holds the caller), is offered to the agent who signs in, with its offer timer running, and
ends when its PBX says so; nobody is offered a ghost."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
from websockets.asyncio.client import connect

from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.calls import make_account
from dispatcher.storage import schema, tables
from dispatcher.storage.engine import make_engine
from dispatcher.storage.phones import SqlPhones
from tests.channels.phone import running as phone
from tests.dispatcher.runtime.running import (
    base_env,
    free_port,
    run,
    switchboard_command,
    wait_port,
)
from tests.dispatcher.runtime.test_answers_e2e import Client
from tests.dispatcher.storage.wiring import wire
from tests.support import need_binary

SECRET = b"recovery-e2e-" + b"k" * 40
CALLS = 3
OFFER_TIMEOUT = 2.0
DOWN_SECONDS = 3.0  # the server stays dead this long (plus its start-up) before it is back
WAIT_SECONDS = 30.0
ORIGIN = "http://127.0.0.1:8080"


def prepare(url: str) -> None:
    """The schema, a phone queue with a short offer timeout, and one phone agent with a SIP
    phone account."""
    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(SqlPhones(w.pool, time.time).put_phone_account(
            make_account("ann", "ann", phone.PASSWORD)))
        w.wait(w.store.put_queue(Queue(
            "support", offer_timeout={Channel.PHONE: OFFER_TIMEOUT, Channel.EMAIL: 60.0},
            wrap_up_seconds=1.0)))
        w.wait(w.store.put_agent(Agent("ann", name="Ann", queues={"support"},
                                       capacity={Channel.PHONE: 1, Channel.EMAIL: 3},
                                       channels={Channel.PHONE})))
    finally:
        w.close()


def token(sub: str, role: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": role, "iat": now, "exp": now + 600,
                       "iss": "switchboard", "aud": "switchboard-console"}, SECRET,
                      algorithm="HS256")


class Deployment:
    """`switchboard serve` with the phone edge (SIP on UDP, the CTI) and the console, on fixed
    ports so that a restarted server is found where the first one was."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp, self.url = tmp, url
        (tmp / "jwt.secret").write_bytes(SECRET)
        self.http, self.ws, self.cti = free_port(), free_port(), free_port()
        self.sip = phone.free_udp_port()
        self.env = base_env(
            SWITCHBOARD_DATABASE_URL=url, SWITCHBOARD_SERVER_HTTP_PORT=str(self.http),
            SWITCHBOARD_EMAIL_ENABLED="false",
            SWITCHBOARD_CONSOLE_PORT=str(self.ws),
            SWITCHBOARD_CONSOLE_JWT_SECRET_FILE=str(tmp / "jwt.secret"),
            SWITCHBOARD_CONSOLE_ALLOWED_ORIGINS=ORIGIN,
            SWITCHBOARD_PHONE_ENABLED="true", SWITCHBOARD_PHONE_HOST="127.0.0.1",
            SWITCHBOARD_PHONE_UDP_PORT=str(self.sip), SWITCHBOARD_PHONE_TCP_PORT="-1",
            SWITCHBOARD_PHONE_QUEUES="support=support",
            SWITCHBOARD_PHONE_REQUIRE_DEVICES="false",
            SWITCHBOARD_PHONE_DIGEST_ALGORITHMS="MD5,SHA-256",  # sipp answers MD5 only
            SWITCHBOARD_PHONE_CTI_ENABLED="true", SWITCHBOARD_PHONE_CTI_PORT=str(self.cti),
            SWITCHBOARD_PHONE_CTI_JWT_SECRET_FILE=str(tmp / "jwt.secret"),
        )
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = self.tmp / f"serve-{self.runs}.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen([*switchboard_command(), "serve"], cwd=self.tmp,
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)
        wait_port(self.http, self.proc, log)

    def crash(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return 0 if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def healthz(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=5) as r:
            return json.loads(r.read())

    def cli(self, *args: str):
        done = run(*args, cwd=self.tmp, env=self.env)
        assert done.code == 0, done.err
        return json.loads(done.out)

    def cti_event(self, body: dict) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}/cti/events",
                                     data=json.dumps(body).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {token('pbx1', 'integration')}")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
            return json.loads(r.read())

    def log(self) -> str:
        return "\n".join((self.tmp / f"serve-{n}.log").read_text(errors="replace")[-3000:]
                         for n in range(1, self.runs + 1))


def stored_open_calls(url: str) -> int:
    """The open phone tasks the database holds (committed: what a crash cannot take)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(tables.tasks).where(
                tables.tasks.c.channel == "phone", tables.tasks.c.state.in_(["queued", "offered"]))
            ).scalar_one()
    finally:
        engine.dispose()


def until(check, seconds: float = WAIT_SECONDS):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("timed out")


async def available(port: int):
    """`ann`'s console, open and available (the WebSocket and its client)."""
    ws = await connect(f"ws://127.0.0.1:{port}/",
                       subprotocols=["switchboard.v1", f"bearer.{token('ann', 'agent')}"],
                       origin=ORIGIN, compression=None, open_timeout=10)
    c = Client(ws)
    await ws.send(json.dumps({"type": "hello", "v": 1}))
    await c.expect("welcome")
    assert (await c.request("presence", status="available"))["type"] == "ok"
    return ws, c


async def agent_signs_in(port: int) -> tuple[list[dict], list[dict]]:
    """`ann` opens her console and becomes available: the offers she gets within two offer
    timeouts, and every other frame."""
    ws, c = await available(port)
    try:
        try:
            async with asyncio.timeout(2 * OFFER_TIMEOUT + 1):
                while True:
                    c.seen.append(json.loads(await ws.recv()))
        except TimeoutError:
            pass
        return [f for f in c.seen if f["type"] == "offer"], c.seen
    finally:
        await ws.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'switchboard.db'}"
    return request.getfixturevalue("pg_url")


def test_calls_lost_in_a_crash_are_abandoned_and_cti_calls_wait_on(database, tmp_path):
    sipp = need_binary("sipp")
    prepare(database)
    d = Deployment(tmp_path, database)
    callers = None
    try:
        d.start()
        pbx = d.cti_event({"type": "call.arrived", "call_id": "pbx-call-1",
                           "from": "+3225550199", "queue": "support"})
        started = time.time()
        # Three callers, one a second, each waiting after its 182 Queued.
        callers = phone.sipp(sipp, tmp_path / "callers", f"127.0.0.1:{d.sip}",
                             "customer_waits.xml", "-s", "support", "-m", str(CALLS),
                             "-r", "1", "-p", str(phone.free_udp_port()))
        until(lambda: d.healthz()["open_tasks"] == CALLS + 1)
        # The router holds a call before its intake commits: crash once all are stored.
        until(lambda: stored_open_calls(database) == CALLS + 1)
        crashed = time.time()
        d.crash()
        time.sleep(DOWN_SECONDS)
        d.start()
        back = time.time()
        # Settled before /healthz answered at all: only the CTI call is open.
        assert d.healthz()["open_tasks"] == 1, d.log()

        lost = d.cli("tasks", "list", "--state", "abandoned", "--json")
        assert len(lost) == CALLS and {t["channel"] for t in lost} == {"phone"}
        waits = []
        for task in lost:
            shown = d.cli("tasks", "show", task["id"], "--json")
            kinds = [e["kind"] for e in shown["trail"]]
            assert kinds == ["task.created", "task.queued", "task.abandoned"], kinds
            data = shown["trail"][-1]["data"]
            assert data["reason"] == "call_lost"
            waits.append(data["waited"])
        # The time each waited until the crash (the calls came one a second, and the server
        # died right after the last was queued), not the time the server was down.
        waits.sort()
        assert waits[-1] <= crashed - started + 0.5, (waits, crashed - started)
        assert waits[-1] >= CALLS - 1 - 0.5, waits
        assert all(b - a >= 0.5 for a, b in zip(waits, waits[1:], strict=False)), waits
        assert waits[-1] < back - started - DOWN_SECONDS, waits

        queued = d.cli("tasks", "list", "--state", "queued", "--json")
        assert [t["id"] for t in queued] == [pbx["task_id"]]

        offers, seen = asyncio.run(agent_signs_in(d.ws))
        # The CTI call, offered again after the restart, and its offer timer ran (no answer:
        # the same call again after RONA only once she is back); nothing of the lost calls.
        assert offers and {o["task"]["id"] for o in offers} == {pbx["task_id"]}, (offers, seen)
        trail = [e["kind"] for e in d.cli("tasks", "show", pbx["task_id"], "--json")["trail"]]
        assert "offer.expired" in trail, trail

        d.cti_event({"type": "call.abandoned", "call_id": "pbx-call-1", "reason": "hung_up"})
        assert d.healthz()["open_tasks"] == 0
        pbx_trail = d.cli("tasks", "show", pbx["task_id"], "--json")["trail"]
        pbx_waited = pbx_trail[-1]["data"]["waited"]

        # The report counts each lost call once, as abandoned, with the wait it logged.
        def minute(at: float) -> str:
            return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M")

        report = d.cli("report", "--from", minute(started - 120),
                       "--to", minute(time.time() + 120), "--format", "json", "--quiet")
        calls = report["period"]["channel"]["phone"]
        assert calls["calls_abandoned"] == CALLS + 1, calls
        assert calls["abandon_wait_avg"] == pytest.approx(
            (sum(waits) + pbx_waited) / (CALLS + 1), abs=0.01), calls
    finally:
        if callers is not None:
            callers.stop()
        assert d.stop() == 0, d.log()


def test_a_call_answered_before_a_crash_ends_in_wrap_up_not_abandoned(tmp_path):
    """sipp as the caller and as ann's desk phone: the call is answered (media phone to phone),
    then the server dies. After the restart the call, whose end can no longer reach us, is
    logged as ended (`call_lost`, no talk time: nobody knows how long they talked on) and ann's
    wrap-up runs out by its timer: counted as answered, never abandoned, and ann is not held on
    a call for ever."""
    sipp = need_binary("sipp")
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    prepare(url)
    d = Deployment(tmp_path, url)
    procs = []

    async def connect_the_call() -> None:
        ws, _ = await available(d.ws)
        try:
            procs.append(phone.sipp(
                sipp, tmp_path / "ann-phone", f"127.0.0.1:{d.sip}", "agent_register.xml",
                "-s", "ann", "-au", "ann", "-ap", phone.PASSWORD,
                "-p", str(phone.free_udp_port()), "-m", "1", ooc="agent_answer.xml"))
            await asyncio.to_thread(until, lambda: phone.rows(
                url, "SELECT agent_id FROM phone_bindings"))
            procs.append(phone.sipp(
                sipp, tmp_path / "caller", f"127.0.0.1:{d.sip}", "customer_talks.xml",
                "-s", "support", "-p", str(phone.free_udp_port()), "-m", "1", "-d", "60000"))
            await asyncio.to_thread(until, lambda: phone.rows(
                url, "SELECT id FROM tasks WHERE state = 'assigned'"))
        finally:
            await ws.close()

    try:
        d.start()
        asyncio.run(asyncio.wait_for(connect_the_call(), WAIT_SECONDS * 2))
        (task_id,) = phone.rows(url, "SELECT id FROM tasks")[0]
        time.sleep(1.0)  # they talk
        d.crash()
        time.sleep(DOWN_SECONDS)
        d.start()
        until(lambda: d.healthz()["open_tasks"] == 0)  # the 1 s wrap-up ran out
        trail = d.cli("tasks", "show", task_id, "--json")["trail"]
        kinds = [e["kind"] for e in trail]
        assert "call.answered" in kinds and "task.abandoned" not in kinds, kinds
        assert "task.requeued" not in kinds, kinds
        assert kinds[-3:] == ["task.wrap_up", "call.ended", "task.completed"], kinds
        assert trail[-2]["data"] == {"by": "call_lost", "talk_seconds": None}
        assert trail[-1]["data"]["disposition"] == "wrap_up_timeout"
        (state,) = phone.rows(url, "SELECT state FROM tasks WHERE id = :t", t=task_id)[0]
        assert state == "completed"
    finally:
        for p in procs:
            p.stop()
        assert d.stop() == 0, d.log()
