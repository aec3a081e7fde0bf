"""The supervisor page's messages (docs/protocol.md "Answers", "Collaboration and categories",
"Customers") with real `websockets` clients on the real server and the real back office: an
agent's token is refused every one of them (`forbidden`, nothing changed); a supervisor
edits the library (versions), imports it in parts and exports it, lists and releases parked
spam, finds, corrects and merges customers; the agent whose held answer is decided is told."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.internet.defer import succeed

from dispatcher.aio import to_future
from dispatcher.domain.tasks import Channel
from dispatcher.service.answers import Library
from dispatcher.service.backoffice import BackOffice
from dispatcher.service.codification import Codification, SpamVerdict
from dispatcher.service.customers import Customers
from dispatcher.service.mail import InboundMail, Mail
from dispatcher.service.review import AnswerServices, Review
from dispatcher.storage.answers import MemoryAnswerStore
from dispatcher.storage.codification import MemoryCodificationStore
from tests.agent_console.harness import LoopClock, new_core, run, start_console

DATA = Path(__file__).resolve().parents[1] / "data" / "answers"
SPAM = SpamVerdict(True, True, 9.5, 5.0, ("GTUBE",))

# Every request of the supervisor page, with plausible fields.
REQUESTS = {
    "answer_list": {},
    "answer_save": {"answer": {"id": "x", "title": "X", "text": "x"}},
    "answer_retire": {"answer_id": "delivery-status"},
    "answer_history": {"answer_id": "delivery-status"},
    "answer_import": {"lines": ['{"id": "y", "title": "Y", "text": "y"}']},
    "answer_export": {},
    "review_list": {},
    "review_decide": {"item_id": "r1", "decision": "approved"},
    "spam_list": {},
    "spam_release": {"task_id": "t1"},
    "customer_search": {"query": "ann"},
    "customer_edit": {"customer_id": "c1", "name": "Eve", "identities": []},
    "merge": {"survivor_id": "c1", "merged_id": "c2"},
}


async def wired(tmp_path):
    base = new_core()
    clock = LoopClock()
    mail = Mail(base.assignment, base.store, clock, base.intake)
    store = MemoryAnswerStore(base.store)
    library = Library(store, clock)
    review = Review(library, mail, store, base.store, base.assignment, clock, draw=lambda: 0.0)
    codification = Codification(base.assignment, base.store, MemoryCodificationStore(), clock,
                                base.intake, base.configuration)
    c = await start_console(tmp_path, core=base, desks=dict(
        answers=AnswerServices(library, review), reply_hook=review.reply,
        codification=codification,
        backoffice=BackOffice(library, review, codification, Customers(base.store, clock),
                              base.history)))
    await to_future(library.import_answers((DATA / "library.jsonl").read_text().splitlines(),
                                           "sue"))
    library.rebuild_now()
    await to_future(codification.start())
    codification.stop()  # no periodic refresh in this test
    mail.codify_with(codification)
    review.listen_held(c.desks.review_held)
    review.listen_decided(c.desks.review_decided)
    return c, mail, library


def inbound(subject: str, sender: str = "ann@example.org", text: str = "hello") -> InboundMail:
    return InboundMail(raw=f"Subject: {subject}\r\n\r\n{text}\r\n".encode(), queue="support",
                       from_address=sender, envelope_from=sender, from_name="Ann Example",
                       subject=subject, text=text,
                       message_id=f"{abs(hash((subject, sender)))}@example.org")


@run
async def test_an_agent_token_is_refused_every_request_of_the_supervisor_page(tmp_path):
    c, mail, library = await wired(tmp_path)
    try:
        await c.put_agent("a1", capacity={Channel.EMAIL: 3})
        ann = await c.mail()
        agent = await c.connect("a1")
        for kind, fields in REQUESTS.items():
            if kind == "customer_edit":
                fields = {**fields, "customer_id": ann.customer_id}
            refused = await agent.request(kind, **fields)
            assert (refused["type"], refused["code"]) == ("error", "forbidden"), (kind, refused)
        assert library.get("x") is None and library.get("y") is None
        assert not library.get("delivery-status").retired
        assert (await to_future(c.store.get_customer(ann.customer_id))).name == "Ann Example"
        # The same requests from a supervisor are served (or refused for their content).
        boss = await c.connect("boss", "supervisor")
        for kind, fields in REQUESTS.items():
            answer = await boss.request(kind, **fields)
            assert answer.get("code") != "forbidden", (kind, answer)
    finally:
        await c.stop()


@run
async def test_a_supervisor_keeps_the_library_with_versions_import_and_export(tmp_path):
    c, mail, library = await wired(tmp_path)
    try:
        boss = await c.connect("boss", "supervisor")
        draft = {"id": "late-refund", "title": "Refund late", "text": "Hello {{customer_name}},"}
        first = await boss.request("answer_save", answer=draft)
        second = await boss.request("answer_save", answer={**draft, "text": "Hello again"})
        assert (first["answer"]["version"], second["answer"]["version"]) == (1, 2)
        versions = (await boss.request("answer_history", answer_id="late-refund"))["versions"]
        assert [(v["version"], v["author"]) for v in versions] == [(1, "boss"), (2, "boss")]
        exported = (await boss.request("answer_export"))["lines"]
        assert {json.loads(x)["id"] for x in exported} >= {"late-refund", "delivery-status"}
        part = ['{"id": "from-file", "title": "F", "text": "f"}', exported[0]]
        checked = await boss.request("answer_import", lines=part, first_line=7, check=True)
        assert (checked["checked"], checked["created"], checked["unchanged"]) == (True, 1, 1)
        assert library.get("from-file") is None
        bad = await boss.request("answer_import", lines=["{oops"], first_line=7)
        assert bad["code"] == "invalid_value" and "line 7" in bad["message"]
        done = await boss.request("answer_import", lines=part, first_line=7)
        assert (done["checked"], done["created"]) == (False, 1)
        assert library.get("from-file").owner == "boss"
        for wrong in ({"lines": "not a list"}, {"lines": [], "first_line": 0},
                      {"lines": [1, 2]}):
            assert (await boss.request("answer_import", **wrong))["code"] == "bad_message"
    finally:
        await c.stop()


@run
async def test_a_supervisor_lists_and_releases_parked_spam(tmp_path):
    c, mail, library = await wired(tmp_path)
    try:
        c.desks.codification.set_scorer(lambda raw: succeed(SPAM))
        got = await to_future(mail.receive(inbound("Cheap pills", "pills@spam.example",
                                                   "Buy now")))
        boss = await c.connect("boss", "supervisor")
        listed = await boss.request("spam_list")
        assert listed["total"] == 1
        [parked] = listed["tasks"]
        assert (parked["task_id"], parked["sender"], parked["subject"], parked["score"],
                parked["queue"]) == (got.task_id, "pills@spam.example", "Cheap pills", 9.5,
                                     "support")
        assert (await boss.request("spam_release", task_id=got.task_id))["type"] == "ok"
        assert (await boss.request("spam_list"))["total"] == 0
        assert c.router.tasks[got.task_id].queue == "support"
    finally:
        await c.stop()


@run
async def test_a_supervisor_finds_corrects_and_merges_customers(tmp_path):
    c, mail, library = await wired(tmp_path)
    try:
        ann = await c.mail("ann@example.org", "Ann Exmaple")
        caller = await c.call("+3225550100", "")
        boss = await c.connect("boss", "supervisor")
        found = await boss.request("customer_search", query="ANN@example")
        assert [x["id"] for x in found["customers"]] == [ann.customer_id]
        assert found["customers"][0]["identities"] == [{"kind": "email",
                                                        "value": "ann@example.org"}]
        by_phone = await boss.request("customer_search", query="02 555 01 00")
        assert [x["id"] for x in by_phone["customers"]] == [caller.customer_id]
        edited = await boss.request("customer_edit", customer_id=ann.customer_id,
                                    name="Ann Example", identities=[
                                        {"kind": "email", "value": "ann@example.org"},
                                        {"kind": "email", "value": "Ann@Home.Example"}])
        assert edited["customer"]["name"] == "Ann Example"
        assert {"kind": "email", "value": "ann@home.example"} in edited["customer"]["identities"]
        taken = await boss.request("customer_edit", customer_id=ann.customer_id, name="Ann",
                                   identities=[{"kind": "phone", "value": "+3225550100"}])
        assert taken["code"] == "invalid_value" and "merge" in taken["message"]
        bad = await boss.request("customer_edit", customer_id=ann.customer_id, name="Ann",
                                 identities="ann@example.org")
        assert bad["code"] == "bad_message"
        merged = await boss.request("merge", survivor_id=ann.customer_id,
                                    merged_id=caller.customer_id)
        assert merged["task_ids"] == [caller.id]
        card = await boss.request("history", customer_id=ann.customer_id)
        assert {e["task_id"] for e in card["customer"]["timeline"]} == {ann.id, caller.id}
        audit = [(e.kind, e.actor) for e in c.store.agent_events
                 if e.kind.startswith("customer.")]
        assert audit == [("customer.changed", "supervisor:boss"),
                         ("customer.merged", "supervisor:boss")]
    finally:
        await c.stop()


@run
async def test_the_agent_is_told_the_decision_on_a_held_answer(tmp_path):
    c, mail, library = await wired(tmp_path)
    try:
        await to_future(library.set_agent_share("a1", 1.0))
        await c.put_agent("a1", capacity={Channel.EMAIL: 3})
        agent = await c.connect("a1")
        boss = await c.connect("boss", "supervisor")
        other = await c.connect("sue", "supervisor")
        await agent.request("presence", status="available")
        got = await to_future(mail.receive(inbound("Where is my parcel?",
                                                   text="Order 1234 never came")))
        offer = await agent.expect("offer")
        await agent.request("accept", offer_id=offer["offer_id"])
        held = await agent.request("reply", task_id=got.task_id, text="Hello Ann, it left.")
        assert held["held"]
        [item] = (await boss.request("review_list"))["items"]
        assert item["asked"]["text"] == "Order 1234 never came"
        assert item["asked"]["subject"] == "Where is my parcel?"
        decided = await boss.request("review_decide", item_id=held["held"],
                                     decision="rejected", checklist={"tone": True},
                                     note="check the carrier first")
        assert decided["item"]["state"] == "rejected"
        told = await agent.expect("review_decided")
        assert (told["item"]["id"], told["item"]["state"], told["item"]["reviewer"],
                told["item"]["note"]) == (held["held"], "rejected", "boss",
                                          "check the carrier first")
        assert (await other.expect("review_decided"))["item"]["id"] == held["held"]
    finally:
        await c.stop()
