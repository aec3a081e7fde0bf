"""End to end, as an operator runs it: `switchboard serve` with the e-mail edge and the console.
An e-mail arrives by SMTP (smtplib), is categorised by a rule (codification), an agent in the
console gets the offer with the top three answers, inserts the best one and replies; the reply
is held for review (the agent's review share is 1), a supervisor approves it with a checklist
score, and the answer leaves through the SMTP relay to a real SMTP sink (aiosmtpd). The public
/help page answers a search without login, escaping what the knowledge base holds. Twice on one
server: the agent speaking the console protocol (a `websockets` client), then the agent in the
console page itself (headless Chromium), clicking the best suggestion into the reply box."""

from __future__ import annotations

import asyncio
import json
import re
import smtplib
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import jwt
import pytest
from twisted.internet.task import Clock
from websockets.asyncio.client import connect

from dispatcher.domain.agents import Agent
from dispatcher.domain.categories import KEYWORDS, Category, CategoryRule
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.accounts import Accounts
from dispatcher.service.answers import Library
from dispatcher.storage import schema
from dispatcher.storage.accounts import SqlAccounts
from dispatcher.storage.answers import SqlAnswerStore
from dispatcher.storage.codification import SqlCodificationStore
from tests.agent_console.test_web import WAIT_MS, chromium, launch, watched_page
from tests.channels.email import running
from tests.dispatcher.runtime.running import Sink, desk_env, relay, serving
from tests.dispatcher.storage.wiring import wire

DATA = Path(__file__).resolve().parents[2] / "data" / "answers"
SECRET = b"e2e-secret-" + b"x" * 40
WAIT_SECONDS = 30.0
HOSTILE_KB = "<script>alert('kb')</script> Sunday parcels"


def prepare(url: str) -> None:
    """Queue, agent, library, response mode, review share, category rule, an article and the
    supervisor account of `boss` (a supervisor token needs one)."""
    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(w.store.put_queue(Queue("support")))
        w.wait(w.store.put_agent(Agent("a1", name="Alex Agent", queues={"support"},
                                       capacity={Channel.EMAIL: 3, Channel.PHONE: 1},
                                       channels={Channel.EMAIL})))
        answers = SqlAnswerStore(w.pool, w.commit)
        library = Library(answers, Clock())
        lines = (DATA / "library.jsonl").read_text().splitlines()
        w.wait(library.import_answers(lines, "sue"))
        w.wait(library.put_rule({"queue": "support", "category": "delivery",
                                 "mode": "suggested"}))
        w.wait(library.set_agent_share("a1", 1.0))
        w.wait(library.save_article({"id": "kb-sunday", "question": "Do you deliver on Sundays?",
                                     "answer": HOSTILE_KB, "category": "delivery"}))
        codes = SqlCodificationStore(w.pool, w.commit)
        w.wait(codes.put_category(Category("delivery")))
        w.wait(codes.add_rule(CategoryRule("delivery", "subject", "parcel,order,delivery",
                                           KEYWORDS)))
        library.stop()
        w.wait(Accounts(SqlAccounts(w.pool), w.store, Clock()).set("boss", "supervisor", "Boss"))
    finally:
        w.close()


def token(sub: str, role: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": role, "iat": now, "exp": now + 600,
                       "iss": "switchboard", "aud": "switchboard-console"}, SECRET,
                      algorithm="HS256")


class Client:
    def __init__(self, ws) -> None:
        self.ws, self.seen, self.n = ws, [], 0

    async def request(self, type_: str, **fields):
        self.n += 1
        await self.ws.send(json.dumps({"type": type_, "id": self.n, **fields}))
        return await self.expect(lambda f, n=self.n: f.get("re") == n)

    async def expect(self, what):
        match = (lambda f: f["type"] == what) if isinstance(what, str) else what
        for i, f in enumerate(self.seen):
            if match(f):
                return self.seen.pop(i)
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                f = json.loads(await self.ws.recv())
                if match(f):
                    return f
                self.seen.append(f)


async def console(port: int, sub: str, role: str) -> Client:
    ws = await connect(f"ws://127.0.0.1:{port}/",
                       subprotocols=["switchboard.v1", f"bearer.{token(sub, role)}"],
                       origin="http://127.0.0.1:8080", compression=None, open_timeout=10)
    c = Client(ws)
    await ws.send(json.dumps({"type": "hello", "v": 1}))
    await c.expect("welcome")
    return c


def until(check, seconds: float = WAIT_SECONDS):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("timed out")


@dataclass
class Served:
    url: str
    smtp_port: int
    ws_port: int
    http_port: int
    sink: Sink
    log: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    tmp_path = tmp_path_factory.mktemp("answers-e2e")
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    prepare(url)
    with relay() as (handler, relay_port):
        env, ports = desk_env(tmp_path, url, relay_port, SECRET,
                              SWITCHBOARD_EMAIL_FROM_ADDRESS="help@example.com",
                              SWITCHBOARD_EMAIL_ACK_QUEUES="")
        with serving(tmp_path, env, (ports.smtp, ports.ws, ports.http)) as log:
            yield Served(url, ports.smtp, ports.ws, ports.http, handler, log)


def relayed(served: Served, rcpt: str):
    got = until(lambda: [e for e in served.sink.accepted if e.rcpt_tos == [rcpt]])
    return message_from_bytes(got[0].content, policy=policy.default)


def trail(served: Served, task_id: str) -> dict:
    rows = running.rows(served.url, "select kind, data from task_events where task_id = :t "
                        "order by id", t=task_id)
    return {k: json.loads(d) if isinstance(d, str) else d for k, d in rows}


@pytest.mark.slow
def test_smtp_in_categorised_suggested_reviewed_and_relayed(served: Served) -> None:
    task_id, customer = asyncio.run(asyncio.wait_for(
        _conversation(served.smtp_port, served.ws_port), 120))
    # Ann's first contact: her card in the offer is the customer the intake stored.
    assert running.rows(served.url, "select c.id, c.name, c.created_at from customers c join "
                        "tasks t on t.customer_id = c.id where t.id = :t", t=task_id) == [
        (customer["id"], customer["name"], customer["since"])]
    msg = relayed(served, "ann@customer.org")
    assert msg["Subject"] == "Re: Where is my parcel? [#SB-000001]"
    body = msg.get_body(("plain",)).get_content()
    assert body.startswith("Hello Ann Example,") and "Alex Agent" in body
    data = until(lambda: (lambda d: d if "email.sent" in d else None)(trail(served, task_id)))
    for kind in ("task.categorised", "reply.held", "reply.reviewed", "email.queued"):
        assert kind in data, list(data)
    assert data["task.categorised"]["category"] == "delivery"
    assert (data["email.queued"]["mode"], data["email.queued"]["answer_id"]) == (
        "suggested", "delivery-status")
    assert data["reply.reviewed"]["decision"] == "approved"
    assert (data["reply.reviewed"]["score"], data["reply.reviewed"]["max_score"]) == (4, 5)
    # /help: public, searched, escaped.
    base = f"http://127.0.0.1:{served.http_port}"
    page = urllib.request.urlopen(f"{base}/help?q=sunday", timeout=10).read().decode()
    assert "/help/article/kb-sunday" in page
    article = urllib.request.urlopen(f"{base}/help/article/kb-sunday", timeout=10).read()
    assert b"<script>" not in article and b"&lt;script&gt;" in article


@pytest.mark.slow
def test_the_agent_inserts_a_suggestion_in_the_browser(served: Served) -> None:
    """The same, with the agent in the console page (headless Chromium): the offer shows the
    suggestions, a click inserts the best one in the reply box, Send; the supervisor
    approves over the protocol; the answer leaves through the relay."""
    sync_playwright, expect = chromium()
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page, errors = watched_page(browser, {"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{served.http_port}/")
            page.click("#token-box summary")  # a pasted token (the password sign-in has its own
            page.fill("#token", token("a1", "agent"))  # journey: test_login_e2e.py)
            page.click("#login-form button[type=submit]")
            expect(page.locator("#link")).to_have_text("connected", timeout=WAIT_MS)
            page.click("#go-available")
            expect(page.locator("#presence")).to_have_text("Available", timeout=WAIT_MS)
            mail = EmailMessage()
            mail["From"], mail["To"] = "Bea Browser <bea@customer.org>", "support@example.com"
            mail["Subject"], mail["Message-ID"] = "Parcel arrived broken", "<e2e-2@customer.org>"
            mail.set_content("The box was crushed and the vase in my order arrived damaged.")
            _send(served.smtp_port, mail)
            expect(page.locator("#offer-summary")).to_contain_text("Suggested:",
                                                                   timeout=WAIT_MS)
            page.click("#accept")
            picks = page.locator("#answers-suggested .answer-pick")
            expect(picks).to_have_count(3, timeout=WAIT_MS)
            expect(picks.first).to_contain_text("Parcel arrived damaged")
            picks.first.click()
            expect(page.locator("#reply-text")).to_have_value(
                re.compile(r"^Hello Bea Browser,"))
            page.click("#reply-send")
            expect(page.locator("#toast")).to_contain_text("held for a supervisor",
                                                           timeout=WAIT_MS)
            assert errors == []
        finally:
            browser.close()
    asyncio.run(asyncio.wait_for(_approve_all(served.ws_port), 60))
    msg = relayed(served, "bea@customer.org")
    assert msg.get_body(("plain",)).get_content().startswith("Hello Bea Browser,")
    rows = running.rows(served.url, "select data from task_events where kind = 'email.queued'")
    modes = [(json.loads(d) if isinstance(d, str) else d) for (d,) in rows]
    assert ("suggested", "delivery-damaged") in [(m["mode"], m["answer_id"]) for m in modes]


async def _approve_all(ws_port: int) -> None:
    boss = await console(ws_port, "boss", "supervisor")
    held = (await boss.request("review_list"))["items"]
    assert held
    for item in held:
        done = await boss.request("review_decide", item_id=item["id"], decision="approved",
                                  checklist={"correct": True})
        assert done["type"] == "ok", done
    await boss.ws.close()


async def _conversation(smtp_port: int, ws_port: int) -> tuple[str, dict]:
    agent = await console(ws_port, "a1", "agent")
    boss = await console(ws_port, "boss", "supervisor")
    assert (await agent.request("presence", status="available"))["type"] == "ok"
    mail = EmailMessage()
    mail["From"], mail["To"] = "Ann Example <ann@customer.org>", "support@example.com"
    mail["Subject"], mail["Message-ID"] = "Where is my parcel?", "<e2e-1@customer.org>"
    mail.set_content("I ordered a week ago and nothing came. Where is my order? Tracking?")
    await asyncio.to_thread(_send, smtp_port, mail)
    offer = await agent.expect("offer")
    assert offer["task"]["attributes"]["category"] == "delivery"
    customer, task_id = offer["customer"], offer["task"]["id"]  # a first contact
    assert (customer["name"], customer["identities"]) == (
        "Ann Example", [{"kind": "email", "value": "ann@customer.org"}])
    assert customer["open_tasks"] == [task_id]
    assert [(e["task_id"], e["state"], e["subject"]) for e in customer["timeline"]] == [
        (task_id, "offered", "Where is my parcel?")]
    answers = offer["answers"]
    assert answers["mode"] == "suggested" and len(answers["suggestions"]) == 3
    best = answers["suggestions"][0]
    assert best["answer_id"] == "delivery-status"
    assert (await agent.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
    held = await agent.request("reply", task_id=offer["task"]["id"], text=best["text"],
                               answer_id=best["answer_id"], mode="suggested")
    assert held["type"] == "ok" and held["held"], held
    pushed = await boss.expect("review_held")
    assert pushed["item"]["id"] == held["held"]
    forbidden = await agent.request("review_decide", item_id=held["held"],
                                    decision="approved")
    assert forbidden["code"] == "forbidden"
    decided = await boss.request("review_decide", item_id=held["held"], decision="approved",
                                 checklist={"correct": True, "complete": True, "tone": True,
                                            "language": True, "personal": False})
    assert decided["type"] == "ok" and decided["item"]["score"] == 4
    await agent.ws.close()
    await boss.ws.close()
    return task_id, customer


def _send(port: int, mail: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.send_message(mail)
