"""The console's answer messages (agent_console/answers.py) against a real server with real
`websockets` clients: offers carry the mode and the top three with their score; an agent
searches the library, gets suggestions only for their own work, and replies with the answer
id and mode; supervisor-only messages are refused to agents; a supervisor edits the library,
sees a held answer arrive and approves it with a checklist score."""

from __future__ import annotations

from pathlib import Path

from dispatcher.aio import to_future
from dispatcher.service.answers import Library
from dispatcher.service.mail import EMAIL_QUEUED, InboundMail, Mail
from dispatcher.service.review import AnswerServices, Review
from dispatcher.storage.answers import MemoryAnswerStore
from tests.agent_console.harness import LoopClock, new_core, run, start_console

DATA = Path(__file__).resolve().parents[1] / "data" / "answers"


class Draws:
    def __init__(self) -> None:
        self.values: list[float] = []

    def __call__(self) -> float:
        return self.values.pop(0) if self.values else 0.99


async def wired(tmp_path, mode: str = "suggested"):
    base = new_core()
    clock = LoopClock()
    mail = Mail(base.assignment, base.store, clock, base.intake)
    store = MemoryAnswerStore(base.store)
    library = Library(store, clock)
    draws = Draws()
    review = Review(library, mail, store, base.store, base.assignment, clock, draw=draws)
    c = await start_console(tmp_path, core=base, desks=dict(
        answers=AnswerServices(library, review), reply_hook=review.reply))
    await to_future(library.import_answers((DATA / "library.jsonl").read_text().splitlines(),
                                           "sue"))
    await to_future(library.put_rule({"queue": "support", "mode": mode}))
    library.rebuild_now()
    review.listen_held(c.desks.review_held)
    return c, mail, library, review, draws


async def receive(mail: Mail, subject: str, text: str, sender: str = "ann@example.org"):
    return await to_future(mail.receive(InboundMail(
        raw=b"raw", queue="support", from_address=sender, envelope_from=sender,
        from_name="Ann Example", subject=subject, text=text,
        message_id=f"{abs(hash((subject, text)))}@customer.org")))


@run
async def test_an_offer_carries_the_top_three_and_the_reply_records_the_answer(tmp_path):
    c, mail, library, review, _ = await wired(tmp_path)
    await c.put_agent("a1")
    try:
        client = await c.connect("a1")
        assert client.welcome["features"]["answers"] is True
        await client.request("presence", status="available")
        got = await receive(mail, "Where is my order??", "Where is my parcel? tracking please")
        offer = await client.expect("offer")
        answers = offer["answers"]
        assert answers["mode"] == "suggested" and len(answers["suggestions"]) == 3
        best = answers["suggestions"][0]
        assert best["answer_id"] == "delivery-status" and 0 < best["score"] <= 1
        assert best["text"].startswith("Hello Ann Example,") and best["missing"] == []
        await client.request("accept", offer_id=offer["offer_id"])
        assigned = await client.expect("assigned")
        assert assigned["answers"]["suggestions"][0]["answer_id"] == "delivery-status"
        again = await client.request("suggest", task_id=got.task_id)
        assert again["type"] == "ok" and again["mode"] == "suggested"
        found = await client.request("answers_search", query="password", task_id=got.task_id)
        assert found["answers"][0]["answer_id"] == "password-reset"
        sent = await client.request("reply", task_id=got.task_id, text=best["text"],
                                    answer_id=best["answer_id"], mode="suggested")
        assert sent["type"] == "ok" and sent["status"] == "queued" and "held" not in sent
        queued = [e for e in await to_future(c.store.task_events(got.task_id))
                  if e.kind == EMAIL_QUEUED and e.data["kind"] == "reply"]
        assert [(e.data["mode"], e.data["answer_id"]) for e in queued] == [
            ("suggested", "delivery-status")]
        bad = await client.request("reply", task_id=got.task_id, text="x", mode="automatic")
        assert bad["code"] == "invalid_value"
    finally:
        await c.stop()


@run
async def test_agents_get_suggestions_only_for_their_work_and_no_supervisor_messages(tmp_path):
    c, mail, library, review, _ = await wired(tmp_path)
    await c.put_agent("a1")
    await c.put_agent("a2")
    try:
        a1 = await c.connect("a1")
        await a1.request("presence", status="available")
        got = await receive(mail, "password", "I forgot my password")
        await a1.expect("offer")
        a2 = await c.connect("a2")
        refused = await a2.request("suggest", task_id=got.task_id)
        assert refused["code"] == "forbidden"
        assert (await a2.request("answers_search", query="x", task_id=got.task_id)
                )["code"] == "forbidden"
        for kind, fields in [("answer_list", {}), ("answer_save", {"answer": {"id": "x"}}),
                             ("answer_retire", {"answer_id": "refund-timing"}),
                             ("answer_history", {"answer_id": "refund-timing"}),
                             ("review_list", {}),
                             ("review_decide", {"item_id": "x", "decision": "approved"})]:
            answer = await a1.request(kind, **fields)
            assert answer["code"] == "forbidden", kind
        assert library.get("refund-timing").retired is False
        sup = await c.connect("boss", role="supervisor")
        assert (await sup.request("suggest", task_id=got.task_id))["code"] == "forbidden"
        pbx = await c.connect("pbx", role="integration")
        assert (await pbx.request("answers_search", query="refund"))["code"] == "forbidden"
        assert (await sup.request("answers_search", query="refund"))["answers"]
    finally:
        await c.stop()


@run
async def test_a_supervisor_edits_the_library_and_reviews_a_held_answer(tmp_path):
    c, mail, library, review, draws = await wired(tmp_path)
    await c.put_agent("a1")
    await to_future(library.set_agent_share("a1", 1.0))
    try:
        sup = await c.connect("boss", role="supervisor")
        saved = await sup.request("answer_save", answer={
            "id": "refund-timing", "title": "Refund timing", "text": "Hello {{customer_name}}"
            ", your refund arrives within 10 days.", "categories": ["billing"]})
        assert saved["answer"]["version"] == 2 and saved["answer"]["owner"] == "sue"
        history = await sup.request("answer_history", answer_id="refund-timing")
        assert [v["version"] for v in history["versions"]] == [1, 2]
        assert [v["author"] for v in history["versions"]] == ["sue", "boss"]
        bad = await sup.request("answer_save", answer={"id": "x", "title": "t",
                                                       "text": "{{password}}"})
        assert bad["code"] == "invalid_value"
        listed = await sup.request("answer_list")
        assert len(listed["answers"]) == 20
        agent = await c.connect("a1")
        await agent.request("presence", status="available")
        got = await receive(mail, "refund", "When do I get my refund?")
        offer = await agent.expect("offer")
        await agent.request("accept", offer_id=offer["offer_id"])
        draws.values = [0.0]
        held = await agent.request("reply", task_id=got.task_id, text="Your refund is coming.",
                                   answer_id="refund-timing", mode="suggested")
        assert held["held"]
        pushed = await sup.expect("review_held")
        assert pushed["item"]["task_id"] == got.task_id and pushed["item"]["agent_id"] == "a1"
        queue = await sup.request("review_list")
        assert [i["id"] for i in queue["items"]] == [held["held"]]
        assert "correct" in queue["checklist"]
        wrong = await sup.request("review_decide", item_id=held["held"], decision="approved",
                                  checklist={"nonsense": True})
        assert wrong["code"] == "invalid_value"
        done = await sup.request("review_decide", item_id=held["held"], decision="edited",
                                 text="Hello Ann, your refund arrives within 10 days.",
                                 checklist={"correct": True, "tone": True, "complete": False})
        assert done["item"]["state"] == "edited" and done["item"]["score"] == 2
        replies = [msg for msg in await to_future(c.store.mail_messages(got.task_id))
                   if msg.kind == "reply"]
        assert [r.text.strip() for r in replies] == [
            "Hello Ann, your refund arrives within 10 days."]
        assert (await sup.request("review_list"))["items"] == []
    finally:
        await c.stop()
