"""Journeys at the agent's desk on the real server, as users meet it: `switchboard serve` with the
phone edge (SIP), the e-mail edge (SMTP) and the console; the agent in the console page in
headless Chromium (Debian's, through Playwright).

- A call: the agent's desk phone (sipp) registers, a customer (sipp) dials the queue's address,
  the phone answers; the page titles the task "Call from <number>" and runs a call timer from
  the answer; after the caller's BYE the wrap-up countdown shows, Extend adds time, and the
  agent completes with one of the queue's disposition codes (the Disposition list is the
  queue's), which lands in the task's trail.
- A pull queue: two e-mails sent with smtplib appear in the agent's list; one click picks the
  first; a colleague (a `websockets` client) picks the second a moment before the agent clicks
  it: the page says so and the list is up to date again.

Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import re
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import jwt
import pytest

from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Mode, Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.calls import make_account
from dispatcher.storage import schema
from dispatcher.storage.phones import SqlPhones
from tests.agent_console.test_web import (
    ARTIFACTS,
    WAIT_MS,
    chromium,
    launch,
)
from tests.channels.phone import running as phone
from tests.dispatcher.runtime.running import base_env, free_port, serving
from tests.dispatcher.storage.wiring import wire
from tests.support import need_binary

pytestmark = pytest.mark.slow

SECRET = b"desk-journey-secret-" + b"x" * 40
WRAP_UP_SECONDS = 120.0
TALK_MS = 7000
CODES = (("solved", "Solved"), ("callback", "Call back later"), ("sale", "Sale made"))


@dataclass
class Served:
    url: str
    http_port: int
    ws_port: int
    smtp_port: int
    sip_port: int
    tmp: Path
    log: Path


def prepare(url: str) -> None:
    """A call queue with its disposition codes, a pull queue for e-mails, their agents, and the
    call agent's desk phone account."""
    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(w.store.put_queue(Queue("calls", wrap_up_seconds=WRAP_UP_SECONDS,
                                       dispositions=CODES)))
        w.wait(w.store.put_queue(Queue("back", mode=Mode.PULL)))
        w.wait(w.store.put_agent(Agent("a1", name="Alex Agent", queues={"calls"},
                                       channels={Channel.PHONE})))
        for agent_id in ("p1", "p2"):
            w.wait(w.store.put_agent(Agent(agent_id, name=agent_id.upper(), queues={"back"},
                                           channels={Channel.EMAIL})))
        w.wait(SqlPhones(w.pool, time.time).put_phone_account(
            make_account("a1", "a1", phone.PASSWORD)))
    finally:
        w.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("desk-journey")
    url = f"sqlite:///{tmp / 'switchboard.db'}"
    prepare(url)
    (tmp / "console.secret").write_bytes(SECRET)
    http_port, ws_port, smtp_port = free_port(), free_port(), free_port()
    sip_port = phone.free_udp_port()
    env = base_env(
        SWITCHBOARD_DATABASE_URL=url, SWITCHBOARD_SERVER_HTTP_PORT=str(http_port),
        SWITCHBOARD_CONSOLE_PORT=str(ws_port),
        SWITCHBOARD_CONSOLE_JWT_SECRET_FILE=str(tmp / "console.secret"),
        SWITCHBOARD_CONSOLE_ALLOWED_ORIGINS=f"http://127.0.0.1:{http_port}",
        SWITCHBOARD_EMAIL_SMTP_PORT=str(smtp_port),
        SWITCHBOARD_EMAIL_RECIPIENTS="back@example.com=back",
        SWITCHBOARD_EMAIL_ACK_QUEUES="",
        SWITCHBOARD_PHONE_ENABLED="true", SWITCHBOARD_PHONE_UDP_PORT=str(sip_port),
        SWITCHBOARD_PHONE_TCP_PORT="-1", SWITCHBOARD_PHONE_QUEUES="calls=calls",
        SWITCHBOARD_PHONE_DIGEST_ALGORITHMS="MD5,SHA-256", SWITCHBOARD_PHONE_REGISTER_MIN="1",
        SWITCHBOARD_PHONE_QUEUED_INTERVAL="1.0",
    )
    # HTTP last: the SIP edge is up by then
    with serving(tmp, env, (smtp_port, ws_port, http_port)) as log:
        yield Served(url, http_port, ws_port, smtp_port, sip_port, tmp, log)


def token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": "agent", "iat": now, "exp": now + 600,
                       "iss": "switchboard", "aud": "switchboard-console"}, SECRET,
                      algorithm="HS256")


def rows(served: Served, query: str, **params):
    return phone.rows(served.url, query, **params)


def until(check, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("timed out")


def trail(served: Served, task_id: str) -> list[tuple[str, dict]]:
    return [(k, json.loads(d) if isinstance(d, str) else d) for k, d in rows(
        served, "SELECT kind, data FROM task_events WHERE task_id = :t ORDER BY id", t=task_id)]


@pytest.fixture
def browser():
    sync_playwright, _ = chromium()
    with sync_playwright() as p:
        b = launch(p)
        try:
            yield b
        finally:
            b.close()


def signed_in(browser, served: Served, agent_id: str):
    """A page of the console with the agent signed in by token and available."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(f"http://127.0.0.1:{served.http_port}/")
    if page.locator("#token-box summary").count():  # the token form, under the password one
        page.click("#token-box summary")
    page.fill("#token", token(agent_id))
    page.click("#login-form button[type=submit]")
    expect(page.locator("#link")).to_have_text("connected", timeout=WAIT_MS)
    expect(page.locator("#status-chosen")).to_have_text("Offline")
    page.click("#go-available")
    expect(page.locator("#status-chosen")).to_have_text("Available", timeout=WAIT_MS)
    return page


def clock_seconds(text: str) -> int:
    m, s = re.search(r"(\d+):(\d\d)", text).groups()
    return int(m) * 60 + int(s)


def test_a_call_rings_is_answered_timed_wrapped_up_and_coded(served, browser, tmp_path):
    from playwright.sync_api import expect

    sipp = need_binary("sipp")
    target = f"127.0.0.1:{served.sip_port}"
    page = signed_in(browser, served, "a1")
    desk_phone = phone.sipp(sipp, tmp_path / "phone", target, "agent_register.xml",
                            "-s", "a1", "-au", "a1", "-ap", phone.PASSWORD,
                            "-p", str(phone.free_udp_port()), "-m", "1", "-timeout", "45s",
                            "-timeout_error", ooc="agent_answer.xml")
    caller = None
    try:
        until(lambda: rows(served, "SELECT 1 FROM phone_bindings WHERE agent_id = 'a1'"))
        caller = phone.sipp(sipp, tmp_path / "caller", target, "customer_talks.xml",
                            "-s", "calls", "-p", str(phone.free_udp_port()), "-m", "1",
                            "-d", str(TALK_MS), "-timeout", "40s", "-timeout_error")
        # Answered by the desk phone: the task, titled with the caller's number, and its timer.
        title = page.locator("#detail-title")
        expect(title).to_have_text(re.compile(r"^Call from \+3315550\d+$"), timeout=WAIT_MS)
        (task_id, attributes) = until(lambda: rows(
            served, "SELECT id, attributes FROM tasks WHERE queue = 'calls'"))[0]
        attributes = json.loads(attributes) if isinstance(attributes, str) else attributes
        expect(title).to_have_text(f"Call from {attributes['caller']}")
        expect(page.locator("#tasks")).to_contain_text(f"Call from {attributes['caller']}")
        expect(page.locator("#customer-card")).to_contain_text(attributes["caller"])
        timer = page.locator("#call-timer")
        expect(timer).to_have_text(re.compile(r"^On call 0:0\d$"), timeout=WAIT_MS)
        first = clock_seconds(timer.inner_text())
        until(lambda: clock_seconds(timer.inner_text()) >= first + 2)  # it runs
        assert attributes["answered_at"] > 0
        expect(page.locator("#status-chosen")).to_have_text("Available")
        expect(page.locator("#presence")).to_have_text("Busy")  # what supervisors see
        page.screenshot(path=str(ARTIFACTS / "desk-call.png"), full_page=True)

        # The caller hangs up: wrap-up, counting down from the queue's wrap-up time.
        assert caller.wait() == 0, caller.logs()
        left = page.locator("#wrap-left")
        expect(left).to_have_text(re.compile(r"^Wrap-up: 1:5\d left$"), timeout=WAIT_MS)
        expect(timer).to_be_hidden()
        expect(page.locator("#presence")).to_have_text("Wrap-up")
        before = clock_seconds(left.inner_text())
        page.click("#wrap-extend")
        expect(left).to_have_text(re.compile(r"^Wrap-up: 2:5\d left$"), timeout=WAIT_MS)
        assert clock_seconds(left.inner_text()) > before + 50
        options = page.locator("#disposition option")
        assert [(o.get_attribute("value"), o.inner_text()) for o in options.all()] == list(CODES)
        page.screenshot(path=str(ARTIFACTS / "desk-wrap-up.png"), full_page=True)
        page.select_option("#disposition", "callback")
        page.fill("#notes", "wants a call back on Tuesday, any free text")
        page.click("#wrap-done")
        expect(page.locator("#tasks")).to_contain_text("No task yet.", timeout=WAIT_MS)
        assert desk_phone.wait() == 0, desk_phone.logs()
    finally:
        for p in (desk_phone, caller):
            if p is not None:
                p.stop()
    events = dict(until(lambda: (lambda t: t if any(k == "task.completed" for k, _ in t)
                                 else None)(trail(served, task_id))))
    assert events["task.completed"] == {"disposition": "callback",
                                        "notes": "wants a call back on Tuesday, any free text"}
    assert events["task.wrap_up_extended"]["seconds"] == 60
    assert events["call.ended"]["by"] == "caller"
    assert page.errors == []


def test_an_agent_picks_from_the_pull_list(served, browser):
    from playwright.sync_api import expect
    from websockets.sync.client import connect

    page = signed_in(browser, served, "p1")
    pull = page.locator("#pull")
    expect(pull).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#pull-list")).to_contain_text("Nothing to pick")
    for n, subject in enumerate(("Contract renewal", "Change of address"), start=1):
        mail = EmailMessage()
        mail["From"], mail["To"] = f"Customer {n} <c{n}@customer.org>", "back@example.com"
        mail["Subject"], mail["Message-ID"] = subject, f"<pull-{n}@customer.org>"
        mail.set_content(f"Hello, about the {subject.lower()}.")
        with smtplib.SMTP("127.0.0.1", served.smtp_port, timeout=30) as c:
            c.send_message(mail)
        time.sleep(0.05)
    items = page.locator("#pull-list .pull-item")
    expect(items).to_have_count(2, timeout=WAIT_MS)
    expect(items.nth(0)).to_contain_text("Contract renewal")  # the older first
    expect(items.nth(0)).to_contain_text("Customer 1")  # the customer's name
    expect(items.nth(0)).to_contain_text(re.compile(r"SB-\d+"))
    expect(items.nth(1)).to_contain_text("Change of address")
    expect(page.locator("#pull-count")).to_have_text("2")
    page.screenshot(path=str(ARTIFACTS / "desk-pull-list.png"), full_page=True)

    items.nth(0).locator("button").click()
    expect(page.locator("#detail-title")).to_contain_text("Contract renewal", timeout=WAIT_MS)
    expect(items).to_have_count(1, timeout=WAIT_MS)

    # A colleague picks the other one just before the agent clicks it: the frames already on
    # their way to the page are held back (network latency), so the agent still sees it.
    second = items.nth(0).get_attribute("data-task-id")
    page.evaluate("""() => { const live = state.ws.onmessage, held = [];
      state.ws.onmessage = (ev) => held.push(ev);
      window.releaseFrames = () => { state.ws.onmessage = live; held.forEach(live); }; }""")
    with connect(f"ws://127.0.0.1:{served.ws_port}/",
                 subprotocols=["switchboard.v1", f"bearer.{token('p2')}"],
                 origin=f"http://127.0.0.1:{served.http_port}", compression=None) as ws:
        for n, frame in enumerate(({"type": "hello", "v": 1},
                                   {"type": "presence", "status": "available"},
                                   {"type": "pick", "task_id": second}), start=1):
            ws.send(json.dumps({**frame, "id": n}))
        answers = {}
        while 3 not in answers:
            f = json.loads(ws.recv(timeout=10))
            if f.get("re") is not None:
                answers[f["re"]] = f
        assert answers[3]["type"] == "ok", answers[3]
        items.nth(0).locator("button").click()  # the list on screen is a moment old
        page.evaluate("() => window.releaseFrames()")
        expect(page.locator("#toast")).to_contain_text("Someone else took that task first",
                                                        timeout=WAIT_MS)
    expect(page.locator("#pull-list")).to_contain_text("Nothing to pick", timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "desk-pull-taken.png"), full_page=True)
    state = dict(rows(served, "SELECT agent_id, state FROM tasks WHERE queue = 'back'"))
    assert state == {"p1": "assigned", "p2": "assigned"}
    assert page.errors == []
