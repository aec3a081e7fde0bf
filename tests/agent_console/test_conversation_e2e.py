"""The agent's desk for e-mail, end to end as users drive it: the real `switchboard serve`, mail
sent with smtplib, the agent in the console page (headless Chromium), the reply received by a
real SMTP sink (aiosmtpd) acting as the relay. Nothing on the page is built by hand.

A thread of three messages (plain text with a Cc, ISO-8859-1, HTML with an inline image, a
script, a remote image and a PDF attachment) becomes one task; the agent reads every message
in full, sees the formatted HTML without the script or the remote image, downloads the
attachment, answers to all with a library answer and a file; the sink gets the right headers,
parts and attachment; the delivery status on the page follows (sent, then bounced by a real
delivery report fed to the intake); an out-of-office answering the reply is recorded on the
thread and neither reopens the completed task nor opens one. Another agent is refused the
conversation and its files. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid
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
from tests.dispatcher.runtime.running import desk_env, relay, serving
from tests.dispatcher.runtime.test_answers_e2e import SECRET, Sink, console, token, until
from tests.dispatcher.storage.wiring import wire

DATA = Path(__file__).resolve().parents[1] / "data" / "answers"
# A 1x1 PNG (red), the inline image of the HTML message.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763"
    "f8cfc0000003010100c9fe92ef0000000049454e44ae426082")
PDF = b"%PDF-1.4\n% a tiny invoice\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
SCRIPT_MARK = "pwned-by-mail"
HOSTILE = f'<img src=x onerror="document.title=\'{SCRIPT_MARK}\'">'  # text, shown as text


def prepare(url: str) -> None:
    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(w.store.put_queue(Queue("support")))
        for agent_id, name in (("a1", "Alex Agent"), ("a2", "Sam Other")):
            w.wait(w.store.put_agent(Agent(agent_id, name=name, queues={"support"},
                                           capacity={Channel.EMAIL: 3},
                                           channels={Channel.EMAIL})))
        library = Library(SqlAnswerStore(w.pool, w.commit), Clock())
        w.wait(library.import_answers((DATA / "library.jsonl").read_text().splitlines(), "sue"))
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
    log: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("desk-e2e")
    url = f"sqlite:///{tmp / 'switchboard.db'}"
    prepare(url)
    with relay() as (handler, relay_port):
        env, ports = desk_env(tmp, url, relay_port, SECRET,
                              SWITCHBOARD_EMAIL_FROM_ADDRESS="noreply@example.com",
                              SWITCHBOARD_EMAIL_QUEUE_FROM="support=help@example.com",
                              SWITCHBOARD_EMAIL_SIGNATURE="{agent_name}\\nExample Support",
                              # Ann's later mails come checked by "our relay" (issue 13): a
                              # reply to her own mail joins only when authenticated.
                              SWITCHBOARD_EMAIL_AUTH_MODE="relay",
                              SWITCHBOARD_EMAIL_AUTH_SERV_ID="mx.example.com",
                              SWITCHBOARD_EMAIL_AUTH_TRUSTED_RELAYS="127.0.0.1")
        with serving(tmp, env, (ports.smtp, ports.ws, ports.http)) as log:
            yield Served(url, ports.smtp, ports.ws, ports.http, handler, log)


def send(port: int, msg: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.send_message(msg)


def thread(port: int) -> list[str]:
    """Three messages of one customer's thread; their Message-IDs."""
    first = EmailMessage()
    first["From"], first["To"] = "Ann Example <ann@customer.test>", "support@example.com"
    first["Cc"] = "Bob Colleague <bob@customer.test>, support@example.com"
    first["Subject"], first["Message-ID"] = "Order 1234 never arrived", make_msgid("customer.test")
    first.set_content("Hello,\n\nmy order 1234 was due on Monday and nothing came.\n"
                      "Could you check with the carrier?\n" + HOSTILE + "\nThank you,\nAnn\n")
    send(port, first)
    second = EmailMessage()
    second["From"], second["To"] = "Ann Example <ann@customer.test>", "support@example.com"
    second["Subject"], second["Message-ID"] = "Re: Order 1234 never arrived", make_msgid(
        "customer.test")
    second["In-Reply-To"] = second["References"] = first["Message-ID"]
    second["Authentication-Results"] = "mx.example.com; dkim=pass header.d=customer.test"
    second.set_content("Très urgent : c'est un cadeau pour Zoë, merci !\n", charset="iso-8859-1",
                       cte="quoted-printable")
    send(port, second)
    third = EmailMessage()
    third["From"], third["To"] = "Ann Example <ann@customer.test>", "support@example.com"
    third["Subject"], third["Message-ID"] = "Re: Order 1234 never arrived", make_msgid(
        "customer.test")
    third["In-Reply-To"] = second["Message-ID"]
    third["References"] = f"{first['Message-ID']} {second['Message-ID']}"
    third["Authentication-Results"] = "mx.example.com; dkim=pass header.d=customer.test"
    third.set_content("Here is a photo of the label and the invoice.")
    third.add_alternative(
        "<p>Here is a <b>photo</b> of the label:</p><p><img src=\"cid:label@customer.test\" "
        "alt=\"label\"></p><img src=\"http://tracker.invalid/open.png\" "
        f"alt=\"remote\"><script>document.title='{SCRIPT_MARK}'</script>", subtype="html")
    third.get_payload()[1].add_related(PNG, maintype="image", subtype="png",
                                      cid="<label@customer.test>", filename="label.png")
    third.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice 1234.pdf")
    send(port, third)
    return [first["Message-ID"], second["Message-ID"], third["Message-ID"]]


def relayed(served: Served, rcpt: str, kind: str = "") -> EmailMessage:
    def found():
        for e in served.sink.accepted:
            msg = message_from_bytes(e.content, policy=policy.default)
            if rcpt in e.rcpt_tos and kind in str(msg["Subject"]):
                return msg
        return None
    return until(found)


def tasks(served: Served) -> list[tuple[str, str]]:
    return [tuple(r) for r in running.rows(served.url, "select id, state from tasks")]


@pytest.mark.slow
def test_an_agent_reads_the_thread_and_answers_all_with_a_file(served: Served) -> None:
    sync_playwright, expect = chromium()
    ids = thread(served.smtp_port)
    ack = relayed(served, "ann@customer.test", "We received")
    assert ack["Auto-Submitted"] == "auto-replied" and ack["From"] == "Support <help@example.com>"
    assert len(tasks(served)) == 1
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                          accept_downloads=True)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{served.http_port}/")
            page.click("#token-box summary")
            page.fill("#token", token("a1", "agent"))
            page.click("#login-form button[type=submit]")
            expect(page.locator("#link")).to_have_text("connected", timeout=WAIT_MS)
            page.click("#go-available")
            expect(page.locator("#offer")).to_be_visible(timeout=WAIT_MS)
            page.click("#accept")
            expect(page.locator("#detail-title")).to_contain_text("SB-000001", timeout=WAIT_MS)
            entries = page.locator("#conv-list > li.entry")
            expect(entries).to_have_count(4, timeout=WAIT_MS)  # 3 from Ann, our ack
            expect(entries.nth(0)).to_contain_text("Could you check with the carrier?")
            expect(entries.nth(0)).to_contain_text("Cc: bob@customer.test")
            expect(entries.nth(0)).to_contain_text(HOSTILE)  # shown, never run
            assert entries.nth(0).locator("img").count() == 0
            expect(entries.nth(1)).to_contain_text("Acknowledgement")
            expect(entries.nth(2)).to_contain_text("Très urgent : c'est un cadeau pour Zoë")
            newest = entries.nth(3)
            expect(newest).to_contain_text("invoice 1234.pdf")
            # The newest HTML message opens formatted, in a sandboxed frame: the inline image
            # shows, the remote one and the script do not.
            frame_el = newest.locator("iframe.html-frame")
            expect(frame_el).to_have_attribute("sandbox", re.compile("allow-popups"))
            frame = frame_el.content_frame
            expect(frame.locator("b")).to_have_text("photo", timeout=WAIT_MS)
            until(lambda: frame.locator("img[alt=label]").evaluate("i => i.complete && i.naturalWidth")
                  == 1)
            assert frame.locator("img[alt=remote]").evaluate("i => i.naturalWidth") == 0
            assert frame.locator("script").count() == 0
            page.screenshot(path=str(ARTIFACTS / "desk-conversation.png"), full_page=True)
            page.reload()  # the desk opens again on the held task, its thread loaded
            expect(entries).to_have_count(4, timeout=WAIT_MS)
            frame = newest.locator("iframe.html-frame").content_frame
            expect(frame.locator("b")).to_have_text("photo", timeout=WAIT_MS)
            with page.expect_download() as download:
                newest.get_by_role("link", name="invoice 1234.pdf").click()
            assert Path(download.value.path()).read_bytes() == PDF
            # The customer card is the selected task's customer.
            expect(page.locator("#customer-card")).to_contain_text("ann@customer.test")

            # Reply to all with a library answer (placeholders filled) and a file.
            page.fill("#answers-query", "invoice copy")
            page.click("#answers-search")
            pick = page.locator("#answers-found .answer-pick").first
            expect(pick).to_contain_text("Copy of an invoice", timeout=WAIT_MS)
            pick.click()
            expect(page.locator("#reply-text")).to_have_value(re.compile(r"^Hello Ann Example,"))
            page.check("#reply-all")
            page.set_input_files("#reply-files", files=[{
                "name": "credit-note.txt", "mimeType": "text/plain",
                "buffer": b"Credit note CN-77 for order 1234\n"}])
            expect(page.locator("#reply-attachments")).to_contain_text("credit-note.txt · 33 B",
                                                                       timeout=WAIT_MS)
            page.click("#reply-send")
            out = relayed(served, "bob@customer.test", "Re:")
            reply = entries.filter(has_text="Reply").last
            expect(reply.locator(".status")).to_have_text("sent", timeout=WAIT_MS)
            page.screenshot(path=str(ARTIFACTS / "desk-replied.png"), full_page=True)

            assert out["From"] == "Support <help@example.com>"
            assert out["To"] == "Ann Example <ann@customer.test>"
            assert "bob@customer.test" in out["Cc"] and "support@" not in out["Cc"]
            assert out["Subject"] == "Re: Order 1234 never arrived [#SB-000001]"
            assert out["In-Reply-To"] == ids[2]
            assert ids[0] in out["References"] and out["Auto-Submitted"] is None
            text = out.get_body(("plain",)).get_content().replace("\r\n", "\n")
            assert text.startswith("Hello Ann Example,\n\nyou can download every invoice")
            assert "\n-- \nAlex Agent\nExample Support" in text
            assert "wrote:\n> Here is a photo of the label and the invoice." in text
            html = out.get_body(("html",)).get_content()
            assert "<blockquote" in html and "<script" not in html
            files = {a.get_filename(): a.get_content() for a in out.iter_attachments()}
            assert files == {"credit-note.txt": "Credit note CN-77 for order 1234\n"}

            # A delivery report for Bob: the reply shows bounced and the agent is told.
            send(served.smtp_port, dsn(out["Message-ID"], "bob@customer.test"))
            expect(reply.locator(".status")).to_have_text("bounced", timeout=WAIT_MS)
            expect(page.locator("#toast")).to_contain_text("could not be delivered")
            expect(reply).to_contain_text("5.1.1")
            assert len(tasks(served)) == 1  # the report opened nothing

            # The other agent may not read the thread nor fetch its files.
            url = newest.get_by_role("link", name="invoice 1234.pdf").get_attribute("href")
            base = f"http://127.0.0.1:{served.http_port}"
            assert urllib.request.urlopen(base + url, timeout=10).read() == PDF
            forged = re.sub(r"s=a1", "s=a2", url)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + forged, timeout=10)
            assert refused.value.code == 403
            task_id = tasks(served)[0][0]
            with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
                refusal = pool.submit(asyncio.run, _others_refused(served.ws_port, task_id))
                assert refusal.result(60) == "forbidden"

            page.select_option("#disposition", "solved")
            page.click("#complete")
            expect(page.locator("#tasks")).to_contain_text("No task yet.", timeout=WAIT_MS)
            # A link signed while the agent held the task is refused once it is over.
            with pytest.raises(urllib.error.HTTPError) as gone:
                urllib.request.urlopen(base + url, timeout=10)
            assert gone.value.code == 403
            assert page.title() != SCRIPT_MARK and errors == []
            # signed links stay out of the log
            assert not re.search(r"k=[0-9a-f]{64}", served.log.read_text())
        finally:
            browser.close()

    # An out-of-office answering our reply: on the thread, the task stays completed.
    ooo = EmailMessage()
    ooo["From"], ooo["To"] = "Ann Example <ann@customer.test>", "help@example.com"
    ooo["Subject"], ooo["Auto-Submitted"] = "Automatic reply: out of office", "auto-replied"
    ooo["In-Reply-To"] = out["Message-ID"]
    ooo["Message-ID"] = make_msgid("customer.test")
    ooo.set_content("I am away until Monday.")
    with smtplib.SMTP("127.0.0.1", served.smtp_port, timeout=30) as s:
        s.send_message(ooo, to_addrs=["support@example.com"])
    kinds = until(lambda: (lambda r: r if ("auto_reply",) in r else None)(running.rows(
        served.url, "select kind from email_messages where task_id = :t", t=task_id)))
    assert kinds.count(("dsn",)) == 1
    assert tasks(served) == [(task_id, "completed")]
    trail = [k for (k,) in running.rows(served.url, "select kind from task_events where "
                                        "task_id = :t order by id", t=task_id)]
    assert trail[-1] == "email.automatic" and "email.reopened" not in trail
    assert "email.bounced" in trail


def dsn(message_id: str, recipient: str) -> EmailMessage:
    """A delivery status notification (RFC 3464) as Postfix writes one."""
    report = EmailMessage()
    report["From"] = "MAILER-DAEMON@mx.customer.test (Mail Delivery System)"
    report["To"] = "help@example.com"
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Message-ID"] = make_msgid("mx.customer.test")
    report.set_content("I'm sorry to have to inform you that your message could not be "
                       "delivered to one or more recipients.\n")
    report.make_mixed()
    report.replace_header("Content-Type",
                          'multipart/report; report-type="delivery-status"; '
                          f'boundary="{report.get_boundary()}"')
    report.attach(_delivery_status(recipient))
    headers = EmailMessage()
    headers["Content-Type"] = "text/rfc822-headers"
    headers.set_payload(f"Message-ID: {message_id}\nSubject: Re: Order 1234\n")
    report.attach(headers)
    return report


def _delivery_status(recipient: str) -> EmailMessage:
    part = message_from_bytes(
        ("Content-Type: message/delivery-status\n\n"
         "Reporting-MTA: dns; mx.customer.test\n\n"
         f"Final-Recipient: rfc822; {recipient}\nAction: failed\nStatus: 5.1.1\n"
         "Diagnostic-Code: smtp; 550 5.1.1 <bob@customer.test>: Recipient address rejected: "
         "User unknown\n").encode(), policy=policy.default)
    return part


async def _others_refused(ws_port: int, task_id: str) -> str:
    other = await console(ws_port, "a2", "agent")
    try:
        answer = await other.request("conversation", task_id=task_id)
        return answer.get("code", answer["type"])
    finally:
        await other.ws.close()

