"""The wallboard in headless Chromium (Debian's, through Playwright; never downloaded): a
supervisor signs in with a token, sees the live numbers change as e-mails arrive, moves an agent
to another queue (from the balancing drawer, then another by dragging them onto the queue's
tile) and the routing follows at once; an agent's token is turned away. Screenshots go to
test-artifacts/. The wall itself (1920×1080, 150 waiting) is test_wallboard_wall.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent_console.test_web import (
    ARTIFACTS,
    ROOT,
    WAIT_MS,
    chromium,
    launch,
    watched_page,
)


@pytest.fixture
def board(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("wallboard_server.py"))],
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


def test_live_numbers_and_moving_agents_on_the_wallboard(board):
    sync_playwright, expect = chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    command = board["command"]
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page, errors = watched_page(browser, {"width": 1920, "height": 1080})  # a wall screen
            page.goto(f"http://127.0.0.1:{board['http_port']}/wallboard")
            page.fill("#login-id", "boss")  # the supervisor's own account and password
            page.fill("#login-password", board["password"])
            page.click("#password-form button[type=submit]")
            expect(page.locator("#link")).to_have_text("live", timeout=WAIT_MS)
            expect(page.locator("#who")).to_contain_text("boss")
            billing = page.locator("#tile-billing-email")
            expect(billing.locator(".n-waiting .value")).to_have_text("0", timeout=WAIT_MS)
            expect(page.locator("#agent-a1 .queues")).to_have_text("support")

            # E-mails arrive in billing (its only agent is signed off): the numbers follow.
            first = command({"mail": {"queue": "billing", "subject": "Invoice twice"}})
            expect(billing.locator(".n-waiting .value")).to_have_text("1", timeout=WAIT_MS)
            second = command({"mail": {"queue": "billing", "subject": "Refund"}})
            expect(billing.locator(".n-waiting .value")).to_have_text("2", timeout=WAIT_MS)
            expect(page.locator("#waiting tr.task-row")).to_have_count(2)
            expect(page.locator("#waiting")).to_contain_text("Invoice twice")
            expect(billing.locator(".n-wait .value")).not_to_have_text("–")
            # Calls in support go to the agents signed in: busy on the board.
            command({"call": {"number": "+3225550100"}})
            expect(page.locator("#tile-support-phone .count.c-busy b")).to_have_text(
                "1", timeout=WAIT_MS)
            page.screenshot(path=str(ARTIFACTS / "wallboard-live.png"), full_page=True)

            # The supervisor opens the balancing drawer and moves a2 (free) to billing: the
            # routing follows at once.
            page.click("#balancing-toggle")
            page.select_option("#act-agent", "a2")
            page.select_option("#act-queue", "billing")
            page.click("#move-agent")
            expect(page.locator("#agent-a2 .queues")).to_have_text("billing", timeout=WAIT_MS)
            expect(page.locator("#agent-a2 .work")).to_contain_text("offered", timeout=WAIT_MS)
            expect(billing.locator(".n-waiting .sub")).to_have_text("1 offered")
            offered = [command({"task": t["task_id"]}) for t in (first, second)]
            assert {(o["state"], o["agent_id"]) for o in offered} >= {("offered", "a2")}
            # Choosing that task shows the routing decision in words: to a2, b1 not available.
            (to_a2,) = [t["task_id"] for t, o in zip((first, second), offered, strict=True)
                        if o["agent_id"] == "a2"]
            page.select_option("#act-task", to_a2)
            expect(page.locator("#act-decision")).to_have_text(
                "offered to a2 (their best waiting task by priority, due time and arrival; "
                "1 available out of 2 eligible); passed over: 1 more not available",
                timeout=WAIT_MS)

            # Dragging b1 (signed off) onto the support e-mail tile moves them there.
            page.click("#balancing-close")
            page.drag_and_drop("#agent-b1", "#tile-support-email")
            expect(page.locator("#agent-b1 .queues")).to_have_text("support", timeout=WAIT_MS)
            expect(page.locator("#toast")).to_contain_text("now serves support")
            page.screenshot(path=str(ARTIFACTS / "wallboard-moved.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()


def test_an_agent_token_is_turned_away_from_the_wallboard(board):
    sync_playwright, expect = chromium()
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{board['http_port']}/wallboard")
            page.click("#token-box summary")
            page.fill("#token", board["agent_token"])
            page.click("#login-form button[type=submit]")
            expect(page.locator("#login-error")).to_contain_text("supervisor", timeout=WAIT_MS)
            expect(page.locator("#board")).to_be_hidden()
        finally:
            browser.close()
