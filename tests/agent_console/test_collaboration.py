"""The console's collaboration and category messages (agent_console/collaboration.py) with
real `websockets` clients on the real server: notes, consults, reminders, redirects, category
corrections and spam release, each checked server-side (holder / supervisor)."""

from __future__ import annotations

import itertools

from twisted.internet.defer import succeed

from dispatcher.aio import to_future
from dispatcher.domain.tasks import Channel
from dispatcher.service.codification import Codification, SpamVerdict
from dispatcher.service.collaboration import Collaboration
from dispatcher.service.mail import InboundMail, Mail
from dispatcher.storage.codification import MemoryCodificationStore, MemoryCollaborationStore
from tests.agent_console.harness import new_core, run, start_console

_ids = itertools.count(1)


def inbound(subject: str, sender: str = "ann@example.org") -> InboundMail:
    return InboundMail(raw=f"Subject: {subject}\r\n\r\nhello\r\n".encode(), queue="support",
                       from_address=sender, envelope_from=sender, subject=subject,
                       text="hello", message_id=f"m{next(_ids)}@example.org")


async def wired(tmp_path):
    base = new_core()
    mail = Mail(base.assignment, base.store, base.clock, base.intake)
    codification = Codification(base.assignment, base.store, MemoryCodificationStore(),
                                base.clock, base.intake, base.configuration)
    collaboration = Collaboration(base.assignment, base.store,
                                  MemoryCollaborationStore(base.store), base.clock,
                                  base.intake, base.sessions, mail)
    console = await start_console(tmp_path, core=base, desks=dict(
        codification=codification, collaboration=collaboration))
    mail.codify_with(codification)
    mail.intercept_with(collaboration)
    await to_future(codification.start())
    codification.stop()  # no periodic refresh in this test
    return console, mail, codification


async def held(console, mail, agent):
    got = await to_future(mail.receive(inbound("Printer on fire")))
    offer = await agent.expect("offer")
    assert (await agent.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
    await agent.expect("assigned")
    return got.task_id


@run
async def test_notes_and_categories_are_checked_server_side(tmp_path) -> None:
    console, mail, _ = await wired(tmp_path)
    try:
        await console.put_agent("a1", capacity={Channel.EMAIL: 3})
        await console.put_agent("a2", capacity={Channel.EMAIL: 3})
        a1 = await console.connect("a1")
        assert a1.welcome["features"]["collaboration"] is True
        await a1.request("presence", status="available")
        task_id = await held(console, mail, a1)
        a2 = await console.connect("a2")
        sue = await console.connect("sue", role="supervisor")

        ok = await a1.request("note", task_id=task_id, text="VIP reseller")
        assert ok["type"] == "ok" and ok["note_id"] == 1
        assert (await a2.request("note", task_id=task_id, text="x"))["code"] == "forbidden"
        assert (await sue.request("note", task_id=task_id, text="seen"))["type"] == "ok"
        listed = await a1.request("notes", task_id=task_id)
        assert [n["text"] for n in listed["notes"]] == ["VIP reseller", "seen"]
        assert listed["notes"][1]["author"] == "supervisor:sue"
        assert (await a2.request("notes", task_id=task_id))["code"] == "forbidden"

        fixed = await a1.request("categorise", task_id=task_id, category="hardware")
        assert (fixed["category"], fixed["previous"]) == ("hardware", None)
        assert (await a2.request("categorise", task_id=task_id,
                                 category="x"))["code"] == "forbidden"
        assert console.router.tasks[task_id].attributes["category"] == "hardware"

        assert (await a2.request("consult", task_id=task_id, expert="e@lab.example",
                                 question="q"))["code"] == "forbidden"
        asked = await a1.request("consult", task_id=task_id, expert="e@lab.example",
                                 question="Known issue?")
        assert asked["type"] == "ok" and len(asked["token"]) == 32
        assert (await a1.request("consult", task_id=task_id, expert="not-an-address",
                                 question="q"))["code"] == "invalid_value"
        assert (await sue.request("consult", task_id=task_id, expert="e@lab.example",
                                  question="q"))["code"] == "forbidden"  # not an agent
        listed = await sue.request("notes", task_id=task_id)
        assert listed["consults"][0]["expert"] == "e@lab.example"

        later = await a1.request("remind", task_id=task_id, in_seconds=3600,
                                 note="waiting for the serial")
        assert later["type"] == "ok" and later["due_at"] > console.desks.clock.seconds()
        closed = await a1.expect("task_closed")
        assert (closed["task_id"], closed["reason"]) == (task_id, "reminder")
    finally:
        await console.stop()


@run
async def test_redirect_and_spam_release(tmp_path) -> None:
    console, mail, codification = await wired(tmp_path)
    try:
        await console.put_agent("a1", capacity={Channel.EMAIL: 3})
        a1 = await console.connect("a1")
        await a1.request("presence", status="available")
        task_id = await held(console, mail, a1)
        sent = await a1.request("redirect", task_id=task_id, to="billing@partner.example",
                                note="not for us")
        assert sent["type"] == "ok"
        closed = await a1.expect("task_closed")
        assert closed["reason"] == "redirected"

        codification.set_scorer(lambda raw: succeed(SpamVerdict(True, True, 1002.0, 5.0)))
        spam = await to_future(mail.receive(inbound("Cheap pills", "x@spam.example")))
        assert console.router.tasks[spam.task_id].queue == "spam"
        refused = await a1.request("spam_release", task_id=spam.task_id)
        assert refused["code"] == "forbidden"
        sue = await console.connect("sue", role="supervisor")
        assert (await sue.request("spam_release", task_id=spam.task_id))["type"] == "ok"
        assert console.router.tasks[spam.task_id].queue == "support"
        again = await sue.request("spam_release", task_id=spam.task_id)
        assert again["code"] == "invalid_value"
    finally:
        await console.stop()
