"""The agent page in headless Chromium (Debian's, through Playwright; never downloaded), on the
console edge over the service layer (serve_console.py): an agent signs in with a token ("use a
token instead"), goes available, gets an offer and then a call, sees the customer's history in
the screen pop, accepts and completes both. What an agent reads of a real e-mail is tested
through the real server, SMTP in and out: test_conversation_e2e.py. Screenshots go to
test-artifacts/ (gitignored)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import missing

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
WAIT_MS = 10_000


def chromium():
    """(sync_playwright, expect) for a test in Debian's Chromium; missing() (a skip, or a
    failure in strict mode) when Chromium or playwright is not installed."""
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e .[test])")
    ARTIFACTS.mkdir(exist_ok=True)
    return sync_playwright, expect


def launch(p):
    """Headless Chromium with the arguments this machine needs."""
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def watched_page(browser, viewport: dict | None = None):
    """A new page (1280x900 unless `viewport`) and the list its script errors go to: a journey
    asserts it stays empty."""
    page = browser.new_page(viewport=viewport or {"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


@pytest.fixture
def console(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("serve_console.py"))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)},
    )
    info = json.loads(proc.stdout.readline())
    assert "error" not in info, info.get("error")

    def command(obj: dict) -> dict:
        proc.stdin.write(json.dumps(obj) + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    info["command"] = command
    yield info
    proc.terminate()
    proc.wait(10)


def test_an_agent_handles_a_mail_and_a_call_in_the_browser(console, tmp_path):
    sync_playwright, expect = chromium()
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page, errors = watched_page(browser)
            page.goto(f"http://127.0.0.1:{console['http_port']}/")
            page.click("#token-box summary")  # integrators' way in: a pasted token
            page.fill("#token", console["token"])
            page.click("#login-form button[type=submit]")
            expect(page.locator("#link")).to_have_text("connected", timeout=WAIT_MS)
            expect(page.locator("#who")).to_contain_text("Alex Martin")
            expect(page.locator("#presence")).to_have_text("Offline")
            page.click("#go-available")
            expect(page.locator("#presence")).to_have_text("Available", timeout=WAIT_MS)

            # An e-mail arrives: the offer pops up with the customer's history.
            console["command"]({"mail": {
                "address": "Ann@Example.org", "name": "Ann Example",
                "subject": "Still charged twice",
                "text": "Hello again,\nmy March invoice is still wrong.\nAnn"}})
            expect(page.locator("#offer")).to_be_visible(timeout=WAIT_MS)
            expect(page.locator("#offer-summary")).to_contain_text("Still charged twice")
            timeline = page.locator("#timeline li")
            expect(timeline).to_have_count(3)
            expect(timeline.nth(1)).to_contain_text("agent a9 · 3 min 42 s")
            expect(timeline.nth(1)).to_contain_text("refund_promised")
            expect(timeline.nth(2)).to_contain_text("Invoice 2026-114 is wrong")
            expect(page.locator("#customer-card")).to_contain_text("+3225550100")
            page.screenshot(path=str(ARTIFACTS / "console-offer.png"), full_page=True)

            page.keyboard.press("a")  # accept
            expect(page.locator("#offer")).to_be_hidden(timeout=WAIT_MS)
            expect(page.locator("#detail-title")).to_contain_text("Still charged twice")
            page.screenshot(path=str(ARTIFACTS / "console-mail.png"), full_page=True)
            page.select_option("#disposition", "solved")
            page.fill("#notes", "explained the double charge")
            page.click("#complete")
            expect(page.locator("#tasks")).to_contain_text("No task yet.", timeout=WAIT_MS)

            # A call from the same customer's number.
            console["command"]({"call": {"number": "+32 2 555 01 00", "name": "Ann"}})
            expect(page.locator("#offer-title")).to_contain_text("Incoming call",
                                                                 timeout=WAIT_MS)
            expect(page.locator("#timeline li")).to_have_count(4)
            expect(page.locator("#offer-ringing")).to_be_visible()  # the ringing call
            page.click("#accept")
            expect(page.locator("#detail-title")).to_contain_text("Call from +32 2 555 01 00",
                                                                  timeout=WAIT_MS)
            page.keyboard.press("c")  # complete with the chosen disposition
            expect(page.locator("#tasks")).to_contain_text("No task yet.", timeout=WAIT_MS)

            # A call ringing the agent's SIP phone: answered on the phone, not in the page.
            console["command"]({"call": {"number": "+32 2 555 01 00", "source": "sip"}})
            expect(page.locator("#offer-hint")).to_contain_text("answer it", timeout=WAIT_MS)
            expect(page.locator("#accept")).to_be_hidden()
            page.screenshot(path=str(ARTIFACTS / "console-call.png"), full_page=True)
            page.keyboard.press("r")  # reject: the phone stops ringing
            expect(page.locator("#offer")).to_be_hidden(timeout=WAIT_MS)
            page.screenshot(path=str(ARTIFACTS / "console-done.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
