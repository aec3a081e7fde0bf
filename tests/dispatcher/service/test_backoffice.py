"""The back office (dispatcher.service.backoffice) through the real service layer: every use
case refused to anyone but a supervisor before anything is read or written; the library's
changes, imports and exports audited with the supervisor; held answers with the customer's
message, decided, the agent told after the commit; the mails parked as spam listed (also after
a restart on SQLite and PostgreSQL) and released; customers corrected and merged, audited."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from twisted.internet.defer import succeed

from dispatcher.domain.errors import Forbidden, InvalidValue
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service import codification as c
from dispatcher.service.answers import ANSWER_RETIRED, ANSWER_SAVED, Library
from dispatcher.service.backoffice import BackOffice, Caller, NotAvailable
from dispatcher.service.codification import Codification, SpamVerdict
from dispatcher.service.customers import CUSTOMER_CHANGED, Customers
from dispatcher.service.history import CUSTOMER_MERGED, History
from dispatcher.service.intake import email_identity
from dispatcher.service.mail import InboundMail, Mail
from dispatcher.service.review import REPLY_REVIEWED, Review
from dispatcher.storage.answers import MemoryAnswerStore
from dispatcher.storage.codification import MemoryCodificationStore
from tests.dispatcher.service.stacks import Stack, failure_of, result

DATA = Path(__file__).resolve().parents[2] / "data" / "answers"
BOSS = Caller("boss", "supervisor")
SPAM = SpamVerdict(True, True, 12.5, 5.0, ("GTUBE", "URIBL_BLACK"))


def threads(fn, *args):
    return succeed(fn(*args))


@dataclass
class World:
    stack: Stack
    mail: Mail
    library: Library
    review: Review
    codi: Codification
    office: BackOffice
    decided: list


@pytest.fixture
def w(stack: Stack) -> World:
    stack.put_agent("ann", 5, capacity={"email": 3}, name="Ann Agent")
    mail = Mail(stack.assignment, stack.store, stack.clock, stack.intake)
    answers = MemoryAnswerStore(stack.store)
    library = Library(answers, stack.clock)
    result(library.import_answers((DATA / "library.jsonl").read_text().splitlines(), "sue"))
    library.rebuild_now()
    review = Review(library, mail, answers, stack.store, stack.assignment, stack.clock,
                    draw=lambda: 0.0)  # every sampled reply is held
    decided: list = []
    review.listen_decided(decided.append)
    codi = Codification(stack.assignment, stack.store, MemoryCodificationStore(), stack.clock,
                        stack.intake, stack.configuration, run_in_thread=threads)
    stack.wait(codi.start())
    mail.codify_with(codi)
    history = History(stack.store, stack.assignment)
    office = BackOffice(library, review, codi, Customers(stack.store, stack.clock), history)
    return World(stack, mail, library, review, codi, office, decided)


def inbound(subject="Where is my order??", sender="alice@customer.org",
            text="I ordered a week ago. Where is my parcel? tracking", **kw) -> InboundMail:
    return InboundMail(raw=b"Subject: x\r\n\r\nbody\r\n", queue="support", from_address=sender,
                       envelope_from=sender, from_name="Alice", subject=subject, text=text,
                       message_id=f"{abs(hash((subject, text, sender)))}@c.org", **kw)


def log(w: World, kind: str) -> list:
    return [e for e in w.stack.store.agent_events if e.kind == kind]


# --- who may -------------------------------------------------------------------------------


USE_CASES = {
    "answers": lambda o, who: o.answers(who),
    "save_answer": lambda o, who: o.save_answer(who, {"id": "x", "title": "X", "text": "x"}),
    "retire_answer": lambda o, who: o.retire_answer(who, "delivery-status"),
    "answer_versions": lambda o, who: o.answer_versions(who, "delivery-status"),
    "import_answers": lambda o, who: o.import_answers(who, ['{"id": "y", "title": "Y", '
                                                            '"text": "y"}']),
    "export_answers": lambda o, who: o.export_answers(who),
    "held_answers": lambda o, who: o.held_answers(who),
    "decide": lambda o, who: o.decide(who, "r1", "approved"),
    "parked_spam": lambda o, who: o.parked_spam(who),
    "release_spam": lambda o, who: o.release_spam(who, "t1"),
    "find_customers": lambda o, who: o.find_customers(who, "alice"),
    "customer": lambda o, who: o.customer(who, "c1"),
    "edit_customer": lambda o, who: o.edit_customer(who, "c1", "Eve", []),
    "merge_customers": lambda o, who: o.merge_customers(who, "c1", "c2"),
}


@pytest.mark.parametrize("use_case", sorted(USE_CASES))
@pytest.mark.parametrize("who", [Caller("ann", "agent"), Caller("pbx", "integration"),
                                 Caller("", "supervisor")])
def test_only_a_supervisor_may(w: World, use_case: str, who: Caller) -> None:
    versions = len(result(w.library.history("delivery-status")))
    events = len(w.stack.store.agent_events)
    refused = failure_of(USE_CASES[use_case](w.office, who)).value
    assert isinstance(refused, Forbidden) and refused.code == "forbidden"
    assert "supervisors only" in str(refused)
    assert len(result(w.library.history("delivery-status"))) == versions
    assert w.library.get("x") is None and w.library.get("y") is None
    assert len(w.stack.store.agent_events) == events


def test_what_is_not_wired_is_not_available() -> None:
    office = BackOffice()
    assert office.features() == {"answers": False, "review": False, "spam": False,
                                 "customers": False}
    assert isinstance(failure_of(office.parked_spam(BOSS)).value, NotAvailable)
    assert failure_of(office.find_customers(BOSS, "x")).value.code == "not_available"


# --- the answer library ----------------------------------------------------------------------


def test_library_changes_are_versions_audited_with_the_supervisor(w: World) -> None:
    draft = {"id": "late-refund", "title": "Refund late", "text": "Hello {{customer_name}},"}
    first = result(w.office.save_answer(BOSS, draft))
    w.stack.advance(60)
    second = result(w.office.save_answer(BOSS, {**draft, "text": "Hello {{customer_name}}, "
                                                "your refund is on its way."}))
    same = result(w.office.save_answer(BOSS, {**draft, "text": second.text}))
    retired = result(w.office.retire_answer(BOSS, "late-refund"))
    assert (first.version, second.version, same.version, retired.version) == (1, 2, 2, 3)
    assert first.owner == "boss" and retired.retired
    versions = result(w.office.answer_versions(BOSS, "late-refund"))
    assert [(v.version, v.author) for v in versions] == [(1, "boss"), (2, "boss"), (3, "boss")]
    saved, gone = log(w, ANSWER_SAVED), log(w, ANSWER_RETIRED)
    assert [(e.agent_id, e.actor, e.data["version"]) for e in saved] == [
        ("boss", "supervisor:boss", 1), ("boss", "supervisor:boss", 2)]
    assert gone[0].data == {"answer_id": "late-refund", "version": 3, "title": "Refund late"}
    assert [a.id for a in result(w.office.answers(BOSS))].count("late-refund") == 0
    assert "late-refund" in [a.id for a in result(w.office.answers(BOSS, True))]
    # The import of the CLI (no actor) writes versions but no supervisor's event.
    result(w.library.import_answers(['{"id": "cli", "title": "C", "text": "c"}'], "ops"))
    assert len(log(w, ANSWER_SAVED)) == 2


def test_an_import_in_parts_is_checked_before_anything_is_saved(w: World) -> None:
    lines = ['{"id": "new-one", "title": "New", "text": "Hi"}', "",
             '{"id": "delivery-status", "title": "Where is my parcel", "text": "Changed"}']
    exported = result(w.office.export_answers(BOSS))
    unchanged = exported[0]
    checked = result(w.office.import_answers(BOSS, [*lines, unchanged], check_only=True))
    assert (checked.created, checked.updated, checked.unchanged) == (1, 1, 1)
    assert w.library.get("new-one") is None and log(w, ANSWER_SAVED) == []
    bad = failure_of(w.office.import_answers(BOSS, ['{"id": "ok", "title": "T", "text": "t"}',
                                                    "{not json", '{"id": "x"}'], first_line=41))
    assert isinstance(bad.value, InvalidValue)
    assert "line 42: not JSON" in str(bad.value) and "line 43" in str(bad.value)
    assert w.library.get("ok") is None
    done = result(w.office.import_answers(BOSS, [*lines, unchanged], first_line=1))
    assert (done.created, done.updated, done.unchanged) == (1, 1, 1)
    assert w.library.get("delivery-status").text == "Changed"
    assert {e.data["answer_id"] for e in log(w, ANSWER_SAVED)} == {"new-one", "delivery-status"}
    assert len(result(w.office.export_answers(BOSS))) == len(exported) + 1


# --- the review queue ------------------------------------------------------------------------


def test_a_held_answer_shows_the_customer_message_and_the_agent_hears_the_decision(w) -> None:
    result(w.library.set_agent_share("ann", 1.0))
    got = result(w.mail.receive(inbound(text="My parcel 1234 never came. Where is it?")))
    w.stack.login("ann")
    result(w.stack.sessions.accept("ann", w.stack.last_offer("ann").id))
    held = result(w.review.reply("ann", got.task_id, "Hello Alice, it shipped.",
                                 answer_id="delivery-status", mode="suggested"))["held"]
    [shown] = result(w.office.held_answers(BOSS))
    assert shown.item.id == held and shown.item.text == "Hello Alice, it shipped."
    assert (shown.asked.sender, shown.asked.subject) == ("alice@customer.org",
                                                         "Where is my order??")
    assert shown.asked.text == "My parcel 1234 never came. Where is it?"
    assert shown.asked.request == "SB-000001"
    assert w.decided == []
    decided = result(w.office.decide(BOSS, held, "edited", {"correct": True, "tone": True},
                                     "Hello Alice, it left on Monday.", "say when"))
    assert [(i.id, i.state, i.reviewer, i.score) for i in w.decided] == [
        (held, "edited", "boss", decided.score)]
    reviewed = [e for e in w.stack.events(got.task_id) if e.kind == REPLY_REVIEWED]
    assert reviewed[0].actor == "supervisor:boss" and reviewed[0].data["note"] == "say when"
    assert result(w.office.held_answers(BOSS)) == []
    assert w.office.checklist() == dict(w.review.checklist)


# --- spam ------------------------------------------------------------------------------------


def test_parked_spam_is_listed_newest_first_and_released_by_the_supervisor(w: World) -> None:
    w.codi.set_scorer(lambda raw: succeed(SPAM))
    older = result(w.mail.receive(inbound("Cheap pills", sender="pills@spam.example")))
    w.stack.advance(30)
    newer = result(w.mail.receive(inbound("You won", sender="win@spam.example",
                                          text="Claim your prize now")))
    parked = result(w.office.parked_spam(BOSS))
    assert parked.total == 2 and [p.task_id for p in parked.tasks] == [newer.task_id,
                                                                       older.task_id]
    first = parked.tasks[0]
    assert "preview" not in w.stack.router.tasks[newer.task_id].attributes  # the store's
    assert (first.sender, first.subject, first.preview) == ("win@spam.example", "You won",
                                                            "Claim your prize now")
    assert (first.score, first.threshold, first.rules) == (12.5, 5.0, ("GTUBE", "URIBL_BLACK"))
    assert first.queue == "support" and first.request == "SB-000002"
    assert result(w.office.parked_spam(BOSS, 1)).tasks == (first,)
    result(w.office.release_spam(BOSS, newer.task_id))
    assert [p.task_id for p in result(w.office.parked_spam(BOSS)).tasks] == [older.task_id]
    released = [e for e in w.stack.events(newer.task_id) if e.kind == c.SPAM_RELEASED]
    assert released[0].actor == "supervisor:boss"
    assert w.stack.router.tasks[newer.task_id].queue == "support"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_parked_spam_is_listed_after_a_restart_on_sql(backend, request, tmp_path) -> None:
    """Parked by one process; a new one (router rebuilt from the database) lists it."""
    from dispatcher.storage import schema
    from dispatcher.storage.codification import SqlCodificationStore
    from tests.dispatcher.runtime.running import sql_stack

    url = (f"sqlite:///{tmp_path / 'spam.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    schema.upgrade(url)
    wiring, stack = sql_stack(url)
    try:
        stack.put_queue(Queue("support"))
        codi = Codification(stack.assignment, stack.store,
                            SqlCodificationStore(wiring.pool, wiring.commit), stack.clock,
                            stack.intake, stack.configuration, run_in_thread=threads)
        stack.wait(codi.start())
        codi.set_scorer(lambda raw: succeed(SPAM))
        mail = Mail(stack.assignment, stack.store, stack.clock, stack.intake)
        mail.codify_with(codi)
        got = stack.wait(mail.receive(inbound("Cheap pills", sender="pills@spam.example")))
        stack.settle()
        codi.stop()
        stack.assignment.stop()
    finally:
        wiring.close()
    wiring, again = sql_stack(url)
    try:
        again.wait(again.assignment.restore(again.wait(again.store.load_state())))
        codi = Codification(again.assignment, again.store,
                            SqlCodificationStore(wiring.pool, wiring.commit), again.clock,
                            again.intake, again.configuration, run_in_thread=threads)
        again.wait(codi.start())
        office = BackOffice(codification=codi)
        parked = again.wait(office.parked_spam(BOSS))
        # The preview read from the store (the router's task does not hold it).
        assert "preview" not in again.router.tasks[got.task_id].attributes
        assert [(p.task_id, p.subject, p.preview, p.score, p.queue) for p in parked.tasks] == [
            (got.task_id, "Cheap pills", "I ordered a week ago. Where is my parcel? tracking",
             12.5, "support")]
        assert isinstance(failure_of(office.parked_spam(Caller("ann", "agent"))).value,
                          Forbidden)
        codi.stop()
        again.assignment.stop()
    finally:
        wiring.close()


# --- customers -------------------------------------------------------------------------------


def test_customers_are_found_corrected_and_merged_by_the_supervisor(w: World) -> None:
    ann = w.stack.wait(w.stack.intake.submit(Channel.EMAIL, "support",
                                             email_identity("ann@example.org"), "Ann"))
    other = w.stack.call(identity=email_identity("ann.work@example.org"))
    [found] = result(w.office.find_customers(BOSS, "ann@"))
    assert found.id == ann.customer_id
    changed = result(w.office.edit_customer(BOSS, ann.customer_id, "Ann Example",
                                            [("email", "ann@example.org"),
                                             ("phone", "+32 2 555 01 00")]))
    assert changed.name == "Ann Example"
    [event] = log(w, CUSTOMER_CHANGED)
    assert (event.agent_id, event.actor) == ("boss", "supervisor:boss")
    merged = result(w.office.merge_customers(BOSS, ann.customer_id, other.customer_id))
    assert merged.task_ids == (other.id,)
    assert log(w, CUSTOMER_MERGED)[-1].actor == "supervisor:boss"
    view = result(w.office.customer(BOSS, ann.customer_id))
    assert {e.task_id for e in view.timeline} == {ann.id, other.id}
    assert len(view.card.identities) == 3
