"""The e-mail part of the `Store` contract (dispatcher.service.ports), on every implementation:
MemoryStore, SqlStore on SQLite and on PostgreSQL (same harness as test_store_contract.py)."""

from __future__ import annotations

import pytest

from dispatcher.domain.errors import DuplicateTask
from dispatcher.domain.events import Event
from dispatcher.service.ports import (
    Changes,
    MailAttachment,
    MailMessage,
    NewMail,
    OutboxItem,
    StoredMail,
)
from tests.dispatcher.storage import test_store_contract as contract
from tests.dispatcher.storage.test_store_contract import ALICE, T0, Harness, created, make_task

h = contract.h  # the fixture: memory, SQLite, PostgreSQL


def message(mid: str, task_id: str, at: float = T0, **kw) -> MailMessage:
    kw.setdefault("raw", b"Subject: x\r\n\r\nbody\r\n")
    return MailMessage(id=mid, task_id=task_id, direction=kw.pop("direction", "in"),
                       kind=kw.pop("kind", "customer"), created_at=at, **kw)


def new(h: Harness, task_id: str, *msgs: MailMessage, outbox=(), **kw) -> str:
    """Store a mail task as drafted (no `numbered`); the customer's id."""
    return stored(h, task_id, *msgs, outbox=outbox, **kw).customer_id


def stored(h: Harness, task_id: str, *msgs: MailMessage, outbox=(), numbered=None,
           ack_peer=None, **kw) -> StoredMail:
    task = make_task(task_id, **kw)
    draft = NewMail(task, created(task), list(msgs), list(outbox))
    return h.wait(h.store.create_mail_task(draft, ALICE, "Alice", numbered, ack_peer))


def test_a_mail_task_is_stored_with_its_number_messages_and_attachments(h: Harness) -> None:
    att = MailAttachment("a.csv", "text/csv", 3, b"1,2")
    msg = message("m1", "t1", message_id="x@y", references=("r1@y",), peer="alice@example.org",
                  subject="Hi", text="body", html="<p>b</p>", defects=("D",), malformed=True,
                  attachments=(att, MailAttachment(None, "image/png", 9, None, "/f/ab")),
                  to_addrs=("support@example.com",))
    first = stored(h, "t1", msg)
    assert first.number == 1 and first.mail.task.id == "t1"
    assert h.wait(h.store.get_customer(first.customer_id)).identities == (ALICE,)
    assert first.new == h.wait(h.store.get_customer(first.customer_id))  # created by it
    assert stored(h, "t2").new is None  # Alice is known now
    assert h.wait(h.store.mail_messages("t1")) == [msg]
    assert h.wait(h.store.find_mail_task(request_number=1)).id == "t1"
    assert [e.kind for e in h.wait(h.store.task_events("t1"))] == ["task.created", "task.queued"]


def test_request_numbers_are_given_by_the_store_in_order(h: Harness) -> None:
    assert [stored(h, f"t{n}").number for n in range(1, 4)] == [1, 2, 3]
    assert h.wait(h.store.find_mail_task(request_number=3)).id == "t3"


def test_intakes_of_one_turn_get_unique_increasing_numbers(h: Harness) -> None:
    # Queued before any commit: on SqlStore one group commit takes them all (merged).
    calls = []
    for n in range(10):
        task = make_task(f"t{n}")
        calls.append(h.store.create_mail_task(NewMail(task, created(task)), ALICE, "Alice"))
    numbers = [h.wait(d).number for d in calls]
    assert numbers == list(range(1, 11))
    assert [h.wait(h.store.find_mail_task(request_number=n)).id for n in numbers] == [
        f"t{n}" for n in range(10)]


def test_numbered_rows_are_what_is_stored(h: Harness) -> None:
    def numbered(number: int, last_ack: float | None) -> NewMail:
        assert last_ack is None  # no sender named
        task = make_task("t1", attributes={"request_number": number})
        msg = message("m1", "t1", subject=f"[#{number}]")
        return NewMail(task, [*created(task), Event("email.received", T0, "t1",
                                                    data={"request": number})], [msg])

    got = stored(h, "t1", numbered=numbered)
    assert got.number == 1 and got.mail.task.attributes == {"request_number": 1}
    [task] = h.wait(h.store.load_state()).open_tasks
    assert task.attributes == {"request_number": 1}
    assert [m.subject for m in h.wait(h.store.mail_messages("t1"))] == ["[#1]"]
    assert h.wait(h.store.task_events("t1"))[-1].data == {"request": 1}


def test_a_failed_intake_gives_its_number_to_no_one(h: Harness) -> None:
    stored(h, "t1")
    with pytest.raises(DuplicateTask):
        stored(h, "t1")
    later = stored(h, "t2").number
    assert later > 1  # 2, or 3 on PostgreSQL (the rolled-back number is a gap)
    assert h.wait(h.store.find_mail_task(request_number=later)).id == "t2"
    assert h.wait(h.store.find_mail_task(request_number=1)).id == "t1"


def test_find_by_message_id_newest_first_then_by_task_id(h: Harness) -> None:
    new(h, "t1", message("m1", "t1", message_id="a@x"))
    new(h, "t2", message("m2", "t2", T0 + 5, message_id="a@x"))
    assert h.wait(h.store.find_mail_task(message_ids=["nope", "a@x"])).id == "t2"
    assert h.wait(h.store.find_mail_task(request_number=99, message_ids=["q"])) is None
    assert h.wait(h.store.find_mail_task(task_id="t1")).id == "t1"
    assert h.wait(h.store.find_mail_task(task_id="zz")) is None


def test_add_mail_and_the_last_acknowledgement_read_in_the_storing_transaction(
        h: Harness) -> None:
    new(h, "t1", message("m1", "t1", peer="alice@example.org"))
    ack = message("m2", "t1", T0 + 1, direction="out", kind="ack", peer="alice@example.org",
                  status="queued")
    reply = message("m3", "t1", T0 + 2, direction="out", kind="reply", peer="alice@example.org",
                    status="queued")
    ev = Event("email.queued", T0 + 1, "t1", data={"message": "m2"})
    h.wait(h.store.add_mail([ack, reply], Changes(events=[ev])))
    assert [m.id for m in h.wait(h.store.mail_messages("t1"))] == ["m1", "m2", "m3"]
    assert h.wait(h.store.task_events("t1"))[-1].kind == "email.queued"
    seen: dict[str, float | None] = {}

    def numbered(task_id: str):
        def made(number: int, last_ack: float | None) -> NewMail:
            seen[task_id] = last_ack
            task = make_task(task_id)
            return NewMail(task, created(task))
        return made

    # One batch (queued in one turn: merged on SQL), two senders asked and one not.
    calls = [h.store.create_mail_task(NewMail(make_task(tid), created(make_task(tid))), ALICE,
                                      "Alice", numbered(tid), peer)
             for tid, peer in (("t2", "alice@example.org"), ("t3", "bob@example.org"),
                               ("t4", None))]
    for d in calls:
        h.wait(d)
    assert seen == {"t2": T0 + 1, "t3": None, "t4": None}  # the ack's time, not the reply's


def test_sources_are_known_and_unique(h: Harness) -> None:
    new(h, "t1", message("m1", "t1", source="imap:a/INBOX/1/5"))
    assert h.wait(h.store.known_mail_sources(["imap:a/INBOX/1/5", "imap:a/INBOX/1/6"])) == {
        "imap:a/INBOX/1/5"}
    with pytest.raises(Exception):  # noqa: B017
        new(h, "t2", message("m2", "t2", source="imap:a/INBOX/1/5"))


def test_outbox_delivery_lifecycle(h: Harness) -> None:
    out = message("m2", "t1", T0, direction="out", kind="ack", status="queued", raw=b"R")
    item = OutboxItem("email", "t1", {"message": "m2", "mail_from": "s@x", "rcpt": ["a@y"]}, T0)
    new(h, "t1", out, outbox=[item])
    [due] = h.wait(h.store.due_mail(T0, 10))
    assert (due.message, due.raw, due.mail_from, due.rcpt, due.attempts) == (
        "m2", b"R", "s@x", ("a@y",), 0)
    assert h.wait(h.store.due_mail(T0 - 1, 10)) == []
    h.wait(h.store.settle_mail(due.outbox_id, "m2", "retrying", 1, T0 + 60, "451 later",
                               [Event("email.retry", T0, "t1")]))
    assert h.wait(h.store.due_mail(T0 + 59, 10)) == []
    [again] = h.wait(h.store.due_mail(T0 + 60, 10))
    assert again.attempts == 1
    h.wait(h.store.settle_mail(due.outbox_id, "m2", "sent", 2, None, None, []))
    assert h.wait(h.store.due_mail(T0 + 1e6, 10)) == []
    [stored] = h.wait(h.store.mail_messages("t1"))
    assert (stored.status, stored.error) == ("sent", None)


def test_a_duplicate_task_id_is_refused(h: Harness) -> None:
    new(h, "t1")
    with pytest.raises(DuplicateTask):
        new(h, "t1")


def test_cc_reply_to_and_content_ids_round_trip_and_a_light_read(h: Harness) -> None:
    inline = MailAttachment("p.png", "image/png", 3, b"PNG", None, "p1@x")
    msg = message("m1", "t1", message_id="a@x", to_addrs=("support@example.com",),
                  cc_addrs=("bob@c.test",), reply_to="ann@home.test", attachments=(inline,))
    new(h, "t1", msg)
    assert h.wait(h.store.mail_messages("t1")) == [msg]
    light = h.wait(h.store.mail_messages("t1", content=False))
    assert light[0].raw == b"" and light[0].attachments[0].content is None
    assert light[0].attachments[0].content_id == "p1@x" and light[0].cc_addrs == ("bob@c.test",)


def test_one_message_by_row_id_or_message_id_and_a_bounce(h: Harness) -> None:
    ours = message("m2", "t1", T0 + 1, direction="out", kind="reply", message_id="o@x",
                   status="sent")
    new(h, "t1", message("m1", "t1", message_id="o@x"), ours)
    assert h.wait(h.store.mail_message(id="m1")).id == "m1"
    assert h.wait(h.store.mail_message(message_id="o@x", direction="out")).id == "m2"
    assert h.wait(h.store.mail_message(message_id="o@x")).id == "m2"  # the newest
    assert h.wait(h.store.mail_message(id="zz")) is None
    report = message("m3", "t1", T0 + 2, kind="dsn")
    event = Event("email.bounced", T0 + 2, "t1", data={"message": "m2"})
    h.wait(h.store.mark_mail("m2", "bounced", "550 unknown", [report], Changes(events=[event])))
    got = {m.id: (m.kind, m.status, m.error) for m in h.wait(h.store.mail_messages("t1"))}
    assert got["m2"] == ("reply", "bounced", "550 unknown") and got["m3"][0] == "dsn"
    assert h.wait(h.store.task_events("t1"))[-1].kind == "email.bounced"
