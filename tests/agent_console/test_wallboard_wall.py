"""The wallboard on a wall: headless Chromium at 1920×1080 against the real dispatcher of
wallboard_server.py, with 150 tasks waiting, created through the real service layer (e-mails
received by the mail service, with request numbers and acknowledgements; calls through intake).

Checks what a supervisor sees from across the room: one screen, nothing scrolls or overflows
(the document, the tiles, the cards and everything in them, except text cut on purpose with an
ellipsis); the waiting lists are bounded and say how many more wait; tasks are named by their
request number and subject or the caller's number, never an internal id; each queue says why
its tasks wait; the charts have whole-number ticks at even steps, the whole day on their axis,
and say so when there is nothing to draw; the day's report opens on the page with the
supervisor's sign-in (and the server still refuses it to an agent). Screenshots go to
test-artifacts/."""

from __future__ import annotations

import re

from tests.agent_console.test_wallboard import board  # noqa: F401 - the fixture
from tests.agent_console.test_web import ARTIFACTS, WAIT_MS, chromium, launch, watched_page

WALL = {"width": 1920, "height": 1080}
BILLING_MAILS, VIP_MAILS, CALLS = 100, 20, 30  # 150 waiting in all
HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")

# Every element of the board whose content is wider or taller than its box, except text cut on
# purpose with an ellipsis (a long subject): [(selector-ish, scrollWidth, clientWidth), ...].
OVERFLOWS = """() => {
  const out = [];
  const name = (e) => e.id ? '#' + e.id : e.tagName.toLowerCase() + '.' + [...e.classList].join('.');
  for (const root of document.querySelectorAll('.tile, .card, .chart')) {
    for (const e of [root, ...root.querySelectorAll('*')]) {
      if (!e.clientWidth || e.closest('svg')) continue;
      const style = getComputedStyle(e);
      if (style.textOverflow === 'ellipsis') continue;
      if (e.scrollWidth > e.clientWidth + 1) out.push(['width', name(e), e.scrollWidth, e.clientWidth]);
      const clipped = e === root || style.overflowY !== 'visible';
      if (clipped && e.scrollHeight > e.clientHeight + 1)
        out.push(['height', name(e), e.scrollHeight, e.clientHeight]);
    }
  }
  return out;
}"""

AXIS = """(id) => [...document.querySelectorAll('#' + id + ' text.axis')].map((t) => t.textContent)"""


def fill(command) -> None:
    command({"queue": {"name": "vip", "requires": {"vip": 5}}})
    command({"agent": {"id": "v1", "name": "Vera Novak", "skills": {"vip": 2},
                       "queues": ["vip"], "login": True}})  # signed in, but vip 2 < 5
    for i in range(BILLING_MAILS):  # billing's only agent (b1) is signed off
        got = command({"email": {"queue": "billing", "subject": f"Invoice {i} charged twice",
                                 "from": f"customer{i}@example.org"}})
        assert got["request"].startswith("SB-"), got
    for i in range(VIP_MAILS):
        command({"email": {"queue": "vip", "subject": f"Contract renewal {i}",
                           "from": f"vip{i}@example.org"}})
    for i in range(CALLS):  # a1 and a2 are each offered one; the others wait behind
        command({"call": {"number": f"+32255501{i:02d}"}})


def test_the_wallboard_fits_a_1920x1080_wall_with_150_tasks_waiting(board):  # noqa: F811
    sync_playwright, expect = chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    command = board["command"]
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page, errors = watched_page(browser, WALL)
            page.goto(f"http://127.0.0.1:{board['http_port']}/wallboard")
            page.fill("#login-id", "boss")
            page.fill("#login-password", board["password"])
            page.click("#password-form button[type=submit]")
            expect(page.locator("#link")).to_have_text("live", timeout=WAIT_MS)

            # Nothing yet: the charts say so rather than draw an empty frame.
            expect(page.locator("#chart-waits")).to_contain_text("No calls answered yet today")
            expect(page.locator("#chart-responses")).to_contain_text("No e-mails answered")
            page.screenshot(path=str(ARTIFACTS / "wallboard-wall-empty.png"))

            fill(command)
            billing = page.locator("#tile-billing-email")
            expect(billing.locator(".n-waiting .value")).to_have_text(str(BILLING_MAILS),
                                                                      timeout=WAIT_MS)
            expect(page.locator("#waiting-total")).to_contain_text("150 in all",
                                                                   timeout=WAIT_MS)
            page.wait_for_timeout(1500)  # a tick of the page's clock: the ages are shown
            page.screenshot(path=str(ARTIFACTS / "wallboard-wall-1920x1080.png"))

            # One screen: the document does not scroll, nothing in the tiles overflows.
            size = page.evaluate("() => [document.documentElement.scrollHeight, innerHeight,"
                                 " document.documentElement.scrollWidth, innerWidth]")
            assert size[0] <= size[1] and size[2] <= size[3], size
            assert page.evaluate(OVERFLOWS) == []

            # The waiting lists are bounded and say how many more there are.
            rows = page.locator("#waiting tr.task-row").count()
            assert 5 <= rows < 40, rows
            expect(page.locator("#waiting tr.more")).to_have_text(
                f"and {150 - rows} more waiting")
            shown = billing.locator(".oldest li[data-task]").count()
            assert 1 <= shown <= 5
            expect(billing.locator(".oldest li.more")).to_have_text(
                f"and {BILLING_MAILS - shown} more waiting")
            # The oldest first, by request number and subject: billing's first e-mail.
            expect(billing.locator(".oldest li[data-task]").first).to_contain_text(
                "SB-000001 Invoice 0 charged twice")

            # Request numbers, subjects, callers' numbers; no internal ids.
            board_text = page.inner_text("#board")
            assert "SB-0000" in board_text and "+3225550" in board_text
            assert not HEX_ID.search(board_text)

            # Why each queue's tasks wait, from the router's state.
            expect(billing.locator(".why")).to_have_text("No agent signed in (1 member offline)")
            expect(page.locator("#tile-vip-email .why")).to_have_text(
                "Skill missing: needs vip ≥ 5 (best signed in: 2)")
            expect(page.locator("#tile-support-phone .why")).to_have_text(
                "All 2 agents who could take it are occupied: 2 busy")

            # Charts: whole-number ticks at one even step, the whole day on the axis.
            for chart in ("chart-flow", "chart-depth"):
                labels = page.evaluate(AXIS, chart)
                ticks = [int(x) for x in labels if x.isdigit()]
                steps = {b - a for a, b in zip(ticks, ticks[1:], strict=False)}
                assert ticks[0] == 0 and len(steps) == 1 and 2 <= len(ticks) <= 6, labels
                hours = [x for x in labels if x.endswith("h")]
                assert len(hours) == 8, labels  # every 3 hours of the day, 00h..21h
            # Today's arrivals stand in the slot of the hour they came in, whatever the hour
            # (the axis used to stop at 12 h while data was at 13-14 h). 50 and 12 are the
            # chart's left and right margins (PAD in wallboard.js).
            slot = page.evaluate("""() => {
              const svg = document.getElementById('chart-flow');
              const [, , w] = svg.getAttribute('viewBox').split(' ').map(Number);
              const bar = svg.querySelector('rect.bar.arrived');
              const x = Number(bar.getAttribute('x'));
              const hour = Math.floor((state.live.at - state.live.day_start) / 3600);
              return [Math.floor((x - 50) / ((w - 50 - 12) / 24)), hour];
            }""")
            assert slot[0] == slot[1], slot
            # Nothing settled yet (no call answered, no e-mail answered): said, not drawn.
            expect(page.locator("#chart-sl")).to_contain_text("No request settled yet today")
            assert len(page.evaluate(AXIS, "chart-sl")) == 8  # the day's hours only

            # The day's report, opened with the supervisor's sign-in.
            page.click("#report-link")
            body = page.locator("#report-body")
            expect(body).to_contain_text("Switchboard report", timeout=WAIT_MS)
            expect(body).to_contain_text("counted up to")  # today runs on: figures stop now
            expect(body.locator("svg").first).to_be_visible()
            assert body.locator("td[data-metric='tasks_arrived']").first.inner_text() == "150"
            page.screenshot(path=str(ARTIFACTS / "wallboard-wall-report.png"))
            page.click("#report-close")
            expect(page.locator("#report-view")).to_be_hidden()
            # An agent's token is refused by the server, whatever a page would show.
            status = page.evaluate(
                "async (t) => (await fetch('/report?from=0&to=86400', "
                "{headers: {Authorization: 'Bearer ' + t}})).status", board["agent_token"])
            assert status == 403
            assert errors == []
        finally:
            browser.close()
