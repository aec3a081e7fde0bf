"""The supervisor page end to end, as a supervisor uses it: the real `switchboard serve` on
SQLite with the e-mail edge and the console, the supervisor's account made with the real
`switchboard accounts set boss --role supervisor --password-file F`, mail sent with smtplib,
the agent answering through the console protocol (a `websockets` client; their review share
is 1, so the answer is held), the relay a real SMTP sink (aiosmtpd), and the supervisor in
the page itself (headless Chromium): signs in with the password, creates an answer, edits it
(two versions shown), imports a file and exports the library, approves the held answer with
the checklist (the agent is told, the customer gets it), finds a customer by e-mail, renames
them and merges two customers. What the page shows is checked against the database.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import json
import smtplib
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.answers import Library
from dispatcher.storage import schema
from dispatcher.storage.answers import SqlAnswerStore
from tests.agent_console.test_web import (
    ARTIFACTS,
    WAIT_MS,
    chromium,
    launch,
)
from tests.channels.email import running
from tests.dispatcher.runtime.running import desk_env, relay, run, serving
from tests.dispatcher.runtime.test_answers_e2e import SECRET, Sink, console, until
from tests.dispatcher.storage.wiring import wire

DATA = Path(__file__).resolve().parents[1] / "data" / "answers"
PASSWORD = "amber-signal-314"
AGENT_WAIT_SECONDS = 180.0


def prepare(url: str) -> None:
    """A queue, the agent a1 (every answer of theirs is held for review) and the library."""
    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(w.store.put_queue(Queue("support")))
        w.wait(w.store.put_agent(Agent("a1", name="Alex Agent", queues={"support"},
                                       capacity={Channel.EMAIL: 3}, channels={Channel.EMAIL})))
        library = Library(SqlAnswerStore(w.pool, w.commit), Clock())
        w.wait(library.import_answers((DATA / "library.jsonl").read_text().splitlines(), "sue"))
        w.wait(library.set_agent_share("a1", 1.0))
        library.stop()
    finally:
        w.close()


@dataclass
class Served:
    url: str
    smtp_port: int
    ws_port: int
    http_port: int
    sink: Sink
    tmp: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("supervisor-e2e")
    url = f"sqlite:///{tmp / 'switchboard.db'}"
    prepare(url)
    (tmp / "boss.pw").write_text(PASSWORD + "\n")
    with relay() as (handler, relay_port):
        env, ports = desk_env(tmp, url, relay_port, SECRET,
                              SWITCHBOARD_EMAIL_FROM_ADDRESS="help@example.com",
                              SWITCHBOARD_EMAIL_ACK_QUEUES="")
        made = run("accounts", "set", "boss", "--role", "supervisor", "--name", "Bea Boss",
                   "--password-file", str(tmp / "boss.pw"), cwd=tmp, env=env)
        assert made.code == 0, made.err
        with serving(tmp, env, (ports.smtp, ports.ws, ports.http)):
            yield Served(url, ports.smtp, ports.ws, ports.http, handler, tmp)


def send(port: int, sender: str, subject: str, text: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "support@example.com", subject
    msg.set_content(text)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.send_message(msg)


def rows(served: Served, sql: str, **params) -> list:
    return [tuple(r) for r in running.rows(served.url, sql, **params)]


@dataclass
class AgentAtWork:
    """The agent a1 in their own thread and event loop, speaking the console protocol: takes
    the first offer, answers it (held for review), then waits to be told the decision."""

    ws_port: int
    held: threading.Event = field(default_factory=threading.Event)
    decided: dict = field(default_factory=dict)
    failed: list = field(default_factory=list)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            asyncio.run(asyncio.wait_for(self._work(), AGENT_WAIT_SECONDS))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.failed.append(repr(exc))
            self.held.set()

    async def _work(self) -> None:
        agent = await console(self.ws_port, "a1", "agent")
        assert (await agent.request("presence", status="available"))["type"] == "ok"
        offer = await agent.expect("offer")
        assert (await agent.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
        reply = await agent.request(
            "reply", task_id=offer["task"]["id"],
            text="Hello Ann Example,\n\nyour parcel left our warehouse on Monday.\n\nAlex")
        assert reply.get("held"), reply
        self.held.set()
        told = await agent.expect(lambda f: f["type"] == "review_decided")
        self.decided.update(told["item"])
        await agent.ws.close()


@pytest.mark.slow
def test_a_supervisor_keeps_the_library_reviews_and_fixes_customers_in_the_page(
        served: Served) -> None:
    sync_playwright, expect = chromium()
    base = f"http://127.0.0.1:{served.http_port}"
    wallboard = urllib.request.urlopen(f"{base}/wallboard", timeout=10).read().decode()
    assert 'href="/supervisor"' in wallboard  # the wallboard links the page

    # Ann writes; the agent answers through the protocol; the answer is held for review.
    agent = AgentAtWork(served.ws_port)
    agent.start()
    send(served.smtp_port, "Ann Example <ann@customer.org>", "Order 1234 never arrived",
         "Hello, my order 1234 never arrived. Where is my parcel?")
    assert agent.held.wait(60) and not agent.failed, agent.failed
    # The same person from her work address: a second customer, to be merged.
    send(served.smtp_port, "Ann Example <ann.work@customer.org>", "Gift wrap?",
         "Can you wrap order 1234 as a gift?")
    until(lambda: len(rows(served, "select id from customers")) == 2)
    ARTIFACTS.mkdir(exist_ok=True)
    (served.tmp / "more.jsonl").write_text(json.dumps(
        {"id": "from-file", "title": "Opening hours", "text": "We answer 9:00-18:00."}) + "\n")

    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 1000},
                                          accept_downloads=True)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/supervisor")
            expect(page.locator("#office")).to_be_hidden()
            page.fill("#login-id", "boss")
            page.fill("#login-password", PASSWORD)
            page.click("#password-form button[type=submit]")
            expect(page.locator("#link")).to_have_text("connected", timeout=WAIT_MS)
            expect(page.locator("#who")).to_contain_text("boss")

            # ---- the answer library: create, edit (two versions), import, export
            expect(page.locator("#answer-list tr")).to_have_count(
                len((DATA / "library.jsonl").read_text().splitlines()), timeout=WAIT_MS)
            page.click("#answer-new")
            page.fill("#answer-id", "gift-wrap")
            page.fill("#answer-title", "Gift wrapping")
            page.fill("#answer-text", "Hello {{customer_name}},\n\nwe wrap gifts for free.")
            page.fill("#answer-categories", "orders")
            page.click("#answer-save")
            expect(page.locator("#toast")).to_contain_text("Saved: version 1", timeout=WAIT_MS)
            expect(page.locator("#answer-versions li")).to_have_count(1, timeout=WAIT_MS)
            page.fill("#answer-text", "Hello {{customer_name}},\n\nwe wrap gifts for free, "
                                      "with a card of your choice.")
            page.click("#answer-save")
            expect(page.locator("#toast")).to_contain_text("Saved: version 2", timeout=WAIT_MS)
            versions = page.locator("#answer-versions li")
            expect(versions).to_have_count(2, timeout=WAIT_MS)
            expect(versions.first).to_contain_text("v2")
            expect(versions.first).to_contain_text("by boss")
            expect(versions.nth(1)).to_contain_text("v1")
            expect(page.locator("#answer-gift-wrap")).to_contain_text("v2")
            page.screenshot(path=str(ARTIFACTS / "supervisor-answers.png"), full_page=True)
            with page.expect_file_chooser() as chosen:
                page.click("#answer-import")
            chosen.value.set_files(str(served.tmp / "more.jsonl"))
            expect(page.locator("#import-result")).to_contain_text("1 new", timeout=WAIT_MS)
            expect(page.locator("#answer-from-file")).to_be_visible()
            with page.expect_download() as got:
                page.click("#answer-export")
            exported = Path(got.value.path()).read_text().splitlines()
            ids = {json.loads(line)["id"]: json.loads(line) for line in exported}
            assert ids["gift-wrap"]["version"] == 2 and "from-file" in ids
            assert got.value.suggested_filename.endswith(".jsonl")

            # ---- the review queue: the held answer beside what Ann wrote; approve
            page.click("#tab-review")
            item = page.locator("#review-list .review-item")
            expect(item).to_have_count(1, timeout=WAIT_MS)
            expect(item.locator(".asked")).to_contain_text("never arrived")
            expect(item.locator(".review-text")).to_have_value(
                "Hello Ann Example,\n\nyour parcel left our warehouse on Monday.\n\nAlex")
            for name in ("correct", "complete", "tone"):
                item.locator(f".checklist input[name={name}]").check()
            item.locator(".review-note").fill("good, add the tracking link next time")
            page.screenshot(path=str(ARTIFACTS / "supervisor-review.png"), full_page=True)
            item.locator(".approve").click()
            expect(page.locator("#toast")).to_contain_text("Sent (score 3/5)", timeout=WAIT_MS)
            expect(page.locator("#review-empty")).to_be_visible()

            # ---- customers: find Ann by e-mail, rename her, merge her work address in
            page.click("#tab-customers")
            page.fill("#customer-query", "ann@customer.org")
            page.click("#customer-search button[type=submit]")
            results = page.locator("#customer-results tr")
            expect(results).to_have_count(1, timeout=WAIT_MS)
            results.first.locator(".open").click()
            expect(page.locator("#customer-name")).to_have_value("Ann Example", timeout=WAIT_MS)
            expect(page.locator("#customer-timeline tr")).to_have_count(1)
            expect(page.locator("#customer-timeline")).to_contain_text("Order 1234 never arrived")
            page.fill("#customer-name", "Ann Example-Roux")
            page.click("#customer-save")
            expect(page.locator("#toast")).to_contain_text("Saved: Ann Example-Roux",
                                                           timeout=WAIT_MS)
            page.fill("#customer-query", "customer.org")
            page.click("#customer-search button[type=submit]")
            expect(results).to_have_count(2, timeout=WAIT_MS)
            work = page.locator("#customer-results tr", has_text="ann.work@customer.org")
            work.locator(".merge-into").click()
            expect(page.locator("#merge-text")).to_contain_text("into “Ann Example-Roux”")
            page.click("#merge-confirm")
            expect(page.locator("#toast")).to_contain_text("Merged", timeout=WAIT_MS)
            expect(page.locator("#customer-timeline tr")).to_have_count(2, timeout=WAIT_MS)
            expect(page.locator("#customer-identities li")).to_have_count(2)
            expect(results).to_have_count(1)
            expect(results.first).to_contain_text("ann.work@customer.org")
            page.screenshot(path=str(ARTIFACTS / "supervisor-customers.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()

    # What the page showed is what the database holds, and the far ends got it.
    assert rows(served, "select version, author from answer_versions where answer_id = "
                        "'gift-wrap' order by version") == [(1, "boss"), (2, "boss")]
    until(lambda: agent.decided)
    assert (agent.decided["state"], agent.decided["reviewer"], agent.decided["score"]) == (
        "approved", "boss", 3)
    sent = until(lambda: [e for e in served.sink.accepted if e.rcpt_tos == ["ann@customer.org"]])
    body = message_from_bytes(sent[0].content, policy=policy.default)
    assert "left our warehouse on Monday" in body.get_body(("plain",)).get_content()
    [(name,)] = rows(served, "select distinct c.name from customers c join "
                             "customer_identities i on i.customer_id = c.id")
    assert name == "Ann Example-Roux"
    audit = rows(served, "select kind, actor from agent_events where kind like 'customer.%' "
                         "or kind like 'answer.%' order by id")
    assert audit == [("answer.saved", "supervisor:boss"), ("answer.saved", "supervisor:boss"),
                     ("answer.saved", "supervisor:boss"), ("customer.changed", "supervisor:boss"),
                     ("customer.merged", "supervisor:boss")]
    reviewed = rows(served, "select actor from task_events where kind = 'reply.reviewed'")
    assert reviewed == [("supervisor:boss",)]
