"""Outgoing answers (dispatcher.service.review) on the memory stores with a virtual clock and a
scripted random source: agents' replies sent or held for review by the sampled share, the
supervisor's approve / edit / reject with a checklist score, and the automatic mode's gating
(below the threshold -> an agent; sampled -> review; else sent and the task completed), with
the mode and answer of every sent answer in the `email.queued` event."""

from __future__ import annotations

import json
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred

from dispatcher.domain.errors import Forbidden, InvalidValue, UnknownTask
from dispatcher.domain.tasks import TaskState
from dispatcher.service import review as rv
from dispatcher.service.answers import Library
from dispatcher.service.mail import EMAIL_QUEUED, InboundMail, Mail
from dispatcher.service.ports import ReviewFigures
from dispatcher.service.review import Review
from dispatcher.storage.answers import MemoryAnswerStore
from tests.dispatcher.service.stacks import Stack, failure_of, result

DATA = Path(__file__).resolve().parents[2] / "data" / "answers"


class Draws:
    """A scripted random source: each call gives the next value (then 0.99: not sampled)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def __call__(self) -> float:
        return self.values.pop(0) if self.values else 0.99


@dataclass
class World:
    stack: Stack
    mail: Mail
    library: Library
    review: Review
    draws: Draws
    answers: MemoryAnswerStore


@pytest.fixture
def w(stack: Stack) -> World:
    stack.put_agent("ann", 5, capacity={"email": 3}, name="Ann Agent")
    mail = Mail(stack.assignment, stack.store, stack.clock, stack.intake)
    answers = MemoryAnswerStore(stack.store)
    library = Library(answers, stack.clock)
    result(library.import_answers((DATA / "library.jsonl").read_text().splitlines(), "sue"))
    library.rebuild_now()
    draws = Draws()
    ids = iter(f"r{i}" for i in range(1, 100))
    review = Review(library, mail, answers, stack.store, stack.assignment, stack.clock,
                    draw=draws, new_id=lambda: next(ids))
    mail.answer_with(review)
    return World(stack, mail, library, review, draws, answers)


def inbound(subject: str = "Where is my order??", sender: str = "alice@customer.org",
            text: str = "I ordered a week ago. Where is my parcel? Has it shipped? tracking",
            name: str = "Alice", **kw) -> InboundMail:
    return InboundMail(raw=b"raw", queue="support", from_address=sender, envelope_from=sender,
                       from_name=name, subject=subject, text=text,
                       message_id=f"{abs(hash((subject, text)))}@c.org", **kw)


def assigned(w: World, msg: InboundMail | None = None) -> str:
    got = result(w.mail.receive(msg or inbound()))
    w.stack.login("ann")
    result(w.stack.sessions.accept("ann", w.stack.last_offer("ann").id))
    return got.task_id


def queued(w: World, task_id: str) -> list:
    """The answers queued on the task (the acknowledgement's `email.queued` left out)."""
    return [e for e in w.stack.events(task_id)
            if e.kind == EMAIL_QUEUED and e.data.get("kind") != "ack"]


def replies(w: World, task_id: str) -> list:
    return [m for m in result(w.stack.store.mail_messages(task_id)) if m.kind == "reply"]


def test_suggestions_are_the_top_three_filled_for_the_task(w: World) -> None:
    task_id = assigned(w)
    found = result(w.review.suggest(task_id, "ann"))
    assert len(found) == 3 and found[0].answer_id == "delivery-status"
    assert found[0].score >= found[1].score >= found[2].score > 0
    assert found[0].text.startswith("Hello Alice,") and found[0].text.endswith("Ann Agent")
    assert found[0].missing == ()
    typed = result(w.review.search("password", task_id, "ann"))
    assert typed[0].answer_id == "password-reset" and "Alice" in typed[0].text
    assert isinstance(failure_of(w.review.suggest("nope", "ann")).value, UnknownTask)


def test_an_agent_reply_records_its_mode_and_answer(w: World) -> None:
    task_id = assigned(w)
    got = result(w.review.reply("ann", task_id, "Hello Alice, it shipped.",
                                answer_id="delivery-status", mode="suggested"))
    assert "message" in got
    (event,) = queued(w, task_id)
    assert (event.data["mode"], event.data["answer_id"], event.actor) == (
        "suggested", "delivery-status", "agent:ann")
    free = result(w.review.reply("ann", task_id, "PS: thanks"))
    assert "message" in free and queued(w, task_id)[-1].data["mode"] == "free"
    for bad in ({"mode": "automatic"}, {"mode": "psychic"}, {"answer_id": "nope"}):
        assert isinstance(failure_of(w.review.reply("ann", task_id, "x", **bad)).value,
                          InvalidValue)


def test_a_sampled_reply_waits_for_the_supervisor_who_approves_it(w: World) -> None:
    result(w.library.set_agent_share("ann", 0.5))
    task_id = assigned(w)
    w.draws.values = [0.49]  # below the share: held
    got = result(w.review.reply("ann", task_id, "Hello Alice", answer_id="delivery-status",
                                mode="assisted"))
    assert got == {"held": "r1"}
    assert replies(w, task_id) == [] and queued(w, task_id) == []
    assert [i.id for i in result(w.review.held())] == ["r1"]
    assert "reply.held" in w.stack.kinds(task_id)
    decided = result(w.review.decide("r1", "sue", "approved",
                                     {"correct": True, "tone": True, "complete": True}))
    assert (decided.state, decided.score, decided.max_score) == ("approved", 3, 5)
    (sent,) = replies(w, task_id)
    assert sent.text.strip() == "Hello Alice" and sent.status == "queued"
    (event,) = queued(w, task_id)
    assert (event.data["mode"], event.data["answer_id"]) == ("assisted", "delivery-status")
    reviewed = [e for e in w.stack.events(task_id) if e.kind == rv.REPLY_REVIEWED][0]
    assert reviewed.data["decision"] == "approved" and reviewed.data["score"] == 3
    assert reviewed.data["reviewer"] == "sue" and reviewed.data["agent_id"] == "ann"
    assert reviewed.actor == "supervisor:sue"
    assert result(w.review.held()) == []
    again = failure_of(w.review.decide("r1", "sue", "approved"))
    assert isinstance(again.value, InvalidValue) and len(replies(w, task_id)) == 1


def test_edit_sends_the_supervisors_text_and_reject_sends_nothing(w: World) -> None:
    result(w.library.set_agent_share("ann", 1.0))
    task_id = assigned(w)
    w.draws.values = [0.0, 0.0]
    result(w.review.reply("ann", task_id, "Hello Alice, teh parcel shipped"))
    result(w.review.reply("ann", task_id, "rude answer"))
    bad = failure_of(w.review.decide("r1", "sue", "edited", {"vibes": True}, text="x"))
    assert isinstance(bad.value, InvalidValue)
    assert isinstance(failure_of(w.review.decide("r1", "sue", "edited")).value, InvalidValue)
    result(w.review.decide("r1", "sue", "edited", {"language": False, "correct": True},
                           text="Hello Alice, the parcel shipped."))
    result(w.review.decide("r2", "sue", "rejected", {"tone": False}, note="be polite"))
    (sent,) = replies(w, task_id)
    assert sent.text.strip() == "Hello Alice, the parcel shipped."
    assert result(w.review.figures()) == [ReviewFigures("support", "ann", 2, 0, 1, 1, 1, 10)]


def automatic_rule(w: World, **kw) -> None:
    data = {"queue": "support", "mode": "automatic", "threshold": 0.3, "review_share": 0.1}
    data.update(kw)
    result(w.library.put_rule(data))


def test_automatic_answers_above_the_threshold_and_completes_the_task(w: World) -> None:
    automatic_rule(w)
    w.stack.login("ann")
    got = result(w.mail.receive(inbound()))
    task = result(w.stack.store.find_mail_task(task_id=got.task_id))
    assert task.state is TaskState.COMPLETED and got.task_id not in w.stack.router.tasks
    assert w.stack.offers_made() == []  # never routed
    (sent,) = replies(w, got.task_id)
    body = message_from_bytes(sent.raw, policy=policy.default)
    assert "[#SB-000001]" in body["Subject"]
    assert body.get_body(("plain",)).get_content().startswith("Hello Alice,")
    (event,) = queued(w, got.task_id)
    assert (event.data["mode"], event.data["answer_id"], event.actor) == (
        "automatic", "delivery-status", "system")
    plan = [e for e in w.stack.events(got.task_id) if e.kind == rv.ANSWER_AUTOMATIC][0]
    assert plan.data["plan"] == "send" and plan.data["score"] >= 0.3
    done = [e for e in w.stack.events(got.task_id) if e.kind == "task.completed"][0]
    assert done.data["disposition"] == rv.AUTOMATIC_DISPOSITION
    # The customer writes again: the task reopens for a person.
    again = result(w.mail.receive(inbound("Re: Where is my order?? [#SB-000001]",
                                          text="still nothing", authenticated=True)))
    assert again.action == "reopened" and w.stack.last_offer("ann").task_id == got.task_id


def test_below_the_threshold_or_with_a_missing_value_an_agent_answers(w: World) -> None:
    automatic_rule(w, threshold=0.95)
    w.stack.login("ann")
    low = result(w.mail.receive(inbound()))
    assert w.stack.last_offer("ann").task_id == low.task_id and replies(w, low.task_id) == []
    plan = [e for e in w.stack.events(low.task_id) if e.kind == rv.ANSWER_AUTOMATIC][0]
    assert plan.data["plan"] == "agent" and "below threshold" in plan.data["reason"]
    automatic_rule(w, threshold=0.1)
    nameless = result(w.mail.receive(inbound(sender="bob@c.org", name="", subject="tracking")))
    assert nameless.task_id in w.stack.router.tasks and replies(w, nameless.task_id) == []
    plan = [e for e in w.stack.events(nameless.task_id) if e.kind == rv.ANSWER_AUTOMATIC][0]
    assert plan.data["plan"] == "agent" and "customer_name" in plan.data["reason"]


def test_mail_that_comes_while_a_start_builds_the_index_is_decided_once_it_is_built(
        w: World) -> None:
    """The start does not wait for the index (Library.load): the automatic mode takes what it
    would rank, and decides once the index is in use: sent, or routed to an agent."""
    automatic_rule(w, review_share=0.0)
    w.stack.login("ann")
    builds = []
    pending: Deferred = Deferred()
    w.library.offload = lambda fn, *args: (builds.append((fn, args)), pending)[1]
    result(w.library.load())
    assert not w.library.is_indexed
    answered = result(w.mail.receive(inbound()))
    to_agent = result(w.mail.receive(inbound(subject="Qzxv", sender="bob@c.org", name="Bob",
                                             text="wvqz kjxq")))
    assert w.stack.offers_made() == [] and replies(w, answered.task_id) == []
    assert answered.task_id not in w.stack.router.tasks
    assert to_agent.task_id not in w.stack.router.tasks

    fn, args = builds[0]
    fn(*args)
    pending.callback(None)

    assert w.stack.last_offer("ann").task_id == to_agent.task_id
    assert len(replies(w, answered.task_id)) == 1
    task = result(w.stack.store.find_mail_task(task_id=answered.task_id))
    assert task.state is TaskState.COMPLETED
    plans = {e.task_id: e.data["plan"] for t in (answered.task_id, to_agent.task_id)
             for e in w.stack.events(t) if e.kind == rv.ANSWER_AUTOMATIC}
    assert plans == {answered.task_id: "send", to_agent.task_id: "agent"}


def test_another_mode_never_answers_automatically(w: World) -> None:
    result(w.library.put_rule({"queue": "support", "mode": "suggested", "threshold": 0.0}))
    got = result(w.mail.receive(inbound()))
    assert got.task_id in w.stack.router.tasks
    assert rv.ANSWER_AUTOMATIC not in w.stack.kinds(got.task_id)


def test_a_sampled_automatic_answer_waits_for_review(w: World) -> None:
    automatic_rule(w)
    w.stack.login("ann")
    w.draws.values = [0.05, 0.05]  # both sampled (share 0.1)
    first = result(w.mail.receive(inbound()))
    second = result(w.mail.receive(inbound("Password", sender="c@c.org",
                                           text="I forgot my password, reset link please")))
    assert w.stack.offers_made() == [] and replies(w, first.task_id) == []
    held = result(w.review.held())
    assert [(i.task_id, i.agent_id, i.mode.value) for i in held] == [
        (first.task_id, None, "automatic"), (second.task_id, None, "automatic")]
    assert held[0].text.startswith("Hello Alice,")
    result(w.review.decide(held[0].id, "sue", "approved", {"correct": True}))
    task = result(w.stack.store.find_mail_task(task_id=first.task_id))
    assert task.state is TaskState.COMPLETED and len(replies(w, first.task_id)) == 1
    assert queued(w, first.task_id)[0].data["mode"] == "automatic"
    result(w.review.decide(held[1].id, "sue", "rejected", {"correct": False}))
    assert replies(w, second.task_id) == []
    assert w.stack.last_offer("ann").task_id == second.task_id  # an agent answers instead


def test_a_failed_automatic_write_routes_the_task(w: World, monkeypatch) -> None:
    automatic_rule(w)
    w.stack.login("ann")
    from twisted.internet.defer import fail

    monkeypatch.setattr(w.stack.store, "add_mail", lambda *a, **k: fail(OSError("disk full")))
    got = result(w.mail.receive(inbound()))
    assert w.stack.last_offer("ann").task_id == got.task_id


def test_sent_answers_become_examples_for_the_ranking(w: World) -> None:
    task_id = assigned(w, inbound("Moving", text="new flat next month, zzqx"))
    result(w.review.reply("ann", task_id, "x", answer_id="delivery-address"))
    assert w.library.examples[0][0] == "delivery-address"
    assert "zzqx" in json.dumps(w.library.examples)


@pytest.mark.parametrize(("kw", "reason"), [
    ({"auto_generated": True}, "RFC 3834"),
    ({"envelope_from": ""}, "no sender"),
])
def test_never_an_automatic_answer_to_robots_or_null_senders(w: World, kw, reason) -> None:
    automatic_rule(w, threshold=0.0, review_share=0.0)
    w.stack.login("ann")
    msg = inbound()
    got = result(w.mail.receive(InboundMail(**{**msg.__dict__, **kw})))
    assert replies(w, got.task_id) == [] and got.task_id in w.stack.router.tasks
    plan = [e for e in w.stack.events(got.task_id) if e.kind == rv.ANSWER_AUTOMATIC][0]
    assert plan.data["plan"] == "agent" and reason in plan.data["reason"]


def test_the_service_gives_suggestions_only_to_the_agent_holding_or_offered_the_task(
        w: World) -> None:
    """The rule lives in Review, whoever calls it (the console only translates `Forbidden`)."""
    w.stack.put_agent("bob", 5, capacity={"email": 3})
    got = result(w.mail.receive(inbound()))
    w.stack.login("ann")
    offer = w.stack.last_offer("ann")
    assert offer.task_id == got.task_id
    assert result(w.review.suggest(got.task_id, "ann"))  # offered: yes
    result(w.stack.sessions.accept("ann", offer.id))
    assert result(w.review.suggest(got.task_id, "ann"))  # held: yes
    for ask in (lambda: w.review.suggest(got.task_id, "bob"),
                lambda: w.review.search("parcel", got.task_id, "bob"),
                lambda: w.review.search("parcel", got.task_id, None)):
        assert isinstance(failure_of(ask()).value, Forbidden)
    assert result(w.review.search("parcel", got.task_id, None, any_task=True))  # supervisor
    assert result(w.review.search("parcel", None, "bob"))  # no task: the bare library


def test_only_the_agent_holding_an_email_task_replies_to_it(w: World) -> None:
    w.stack.put_agent("bob", 5, capacity={"email": 3})
    task_id = assigned(w)
    refused = failure_of(w.review.reply("bob", task_id, "Hello Alice"))
    assert isinstance(refused.value, Forbidden) and replies(w, task_id) == []
    direct = rv.Replies(w.mail)  # no library: straight through Mail, same rule
    assert isinstance(failure_of(direct.send("bob", task_id, "Hi")).value, Forbidden)
    assert "message" in result(direct.send("ann", task_id, "Hi"))
    reviewed = rv.Replies(w.mail, w.review)
    assert "message" in result(reviewed.send("ann", task_id, "Hello again"))
    assert len(replies(w, task_id)) == 2
