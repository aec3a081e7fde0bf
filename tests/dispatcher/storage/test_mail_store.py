"""The e-mail part of the `Store` contract (dispatcher.service.ports), on every implementation:
MemoryStore, SqlStore on SQLite and on PostgreSQL (same harness as test_store_contract.py)."""

from __future__ import annotations

import pytest

from dispatcher.domain.errors import DuplicateTask
from dispatcher.domain.events import Event
from dispatcher.service.ports import Changes, MailAttachment, MailMessage, OutboxItem
from tests.dispatcher.storage import test_store_contract as contract
from tests.dispatcher.storage.test_store_contract import ALICE, T0, Harness, created, make_task

h = contract.h  # the fixture: memory, SQLite, PostgreSQL


def message(mid: str, task_id: str, at: float = T0, **kw) -> MailMessage:
    kw.setdefault("raw", b"Subject: x\r\n\r\nbody\r\n")
    return MailMessage(id=mid, task_id=task_id, direction=kw.pop("direction", "in"),
                       kind=kw.pop("kind", "customer"), created_at=at, **kw)


def new(h: Harness, task_id: str, number: int, *msgs: MailMessage, outbox=(), **kw) -> str:
    task = make_task(task_id, **kw)
    return h.wait(h.store.create_mail_task(task, ALICE, "Alice", created(task), number,
                                           list(msgs), list(outbox)))


def test_a_mail_task_is_stored_with_its_number_messages_and_attachments(h: Harness) -> None:
    att = MailAttachment("a.csv", "text/csv", 3, b"1,2")
    msg = message("m1", "t1", message_id="x@y", references=("r1@y",), peer="alice@example.org",
                  subject="Hi", text="body", html="<p>b</p>", defects=("D",), malformed=True,
                  attachments=(att, MailAttachment(None, "image/png", 9, None, "/f/ab")),
                  to_addrs=("support@example.com",))
    customer = new(h, "t1", 7, msg)
    assert h.wait(h.store.get_customer(customer)).identities == (ALICE,)
    assert h.wait(h.store.mail_messages("t1")) == [msg]
    assert h.wait(h.store.max_request_number()) == 7
    assert h.wait(h.store.find_mail_task(request_number=7)).id == "t1"
    assert [e.kind for e in h.wait(h.store.task_events("t1"))] == ["task.created", "task.queued"]


def test_request_numbers_are_unique(h: Harness) -> None:
    new(h, "t1", 1)
    with pytest.raises(Exception):  # noqa: B017 - DuplicateTask or the database's IntegrityError
        new(h, "t2", 1)
    assert h.wait(h.store.max_request_number()) == 1


def test_find_by_message_id_newest_first_then_by_task_id(h: Harness) -> None:
    new(h, "t1", 1, message("m1", "t1", message_id="a@x"))
    new(h, "t2", 2, message("m2", "t2", T0 + 5, message_id="a@x"))
    assert h.wait(h.store.find_mail_task(message_ids=["nope", "a@x"])).id == "t2"
    assert h.wait(h.store.find_mail_task(request_number=99, message_ids=["q"])) is None
    assert h.wait(h.store.find_mail_task(task_id="t1")).id == "t1"
    assert h.wait(h.store.find_mail_task(task_id="zz")) is None


def test_add_mail_and_the_ack_period_lookup(h: Harness) -> None:
    new(h, "t1", 1, message("m1", "t1", peer="alice@example.org"))
    ack = message("m2", "t1", T0 + 1, direction="out", kind="ack", peer="alice@example.org",
                  status="queued")
    ev = Event("email.queued", T0 + 1, "t1", data={"message": "m2"})
    h.wait(h.store.add_mail([ack], Changes(events=[ev])))
    assert [m.id for m in h.wait(h.store.mail_messages("t1"))] == ["m1", "m2"]
    assert h.wait(h.store.last_mail_to("alice@example.org", "ack")) == T0 + 1
    assert h.wait(h.store.last_mail_to("bob@example.org", "ack")) is None
    assert h.wait(h.store.task_events("t1"))[-1].kind == "email.queued"


def test_sources_are_known_and_unique(h: Harness) -> None:
    new(h, "t1", 1, message("m1", "t1", source="imap:a/INBOX/1/5"))
    assert h.wait(h.store.known_mail_sources(["imap:a/INBOX/1/5", "imap:a/INBOX/1/6"])) == {
        "imap:a/INBOX/1/5"}
    with pytest.raises(Exception):  # noqa: B017
        new(h, "t2", 2, message("m2", "t2", source="imap:a/INBOX/1/5"))


def test_outbox_delivery_lifecycle(h: Harness) -> None:
    out = message("m2", "t1", T0, direction="out", kind="ack", status="queued", raw=b"R")
    item = OutboxItem("email", "t1", {"message": "m2", "mail_from": "s@x", "rcpt": ["a@y"]}, T0)
    new(h, "t1", 1, out, outbox=[item])
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
    new(h, "t1", 1)
    with pytest.raises(DuplicateTask):
        new(h, "t1", 2)


def test_cc_reply_to_and_content_ids_round_trip_and_a_light_read(h: Harness) -> None:
    inline = MailAttachment("p.png", "image/png", 3, b"PNG", None, "p1@x")
    msg = message("m1", "t1", message_id="a@x", to_addrs=("support@example.com",),
                  cc_addrs=("bob@c.test",), reply_to="ann@home.test", attachments=(inline,))
    new(h, "t1", 1, msg)
    assert h.wait(h.store.mail_messages("t1")) == [msg]
    light = h.wait(h.store.mail_messages("t1", content=False))
    assert light[0].raw == b"" and light[0].attachments[0].content is None
    assert light[0].attachments[0].content_id == "p1@x" and light[0].cc_addrs == ("bob@c.test",)


def test_one_message_by_row_id_or_message_id_and_a_bounce(h: Harness) -> None:
    ours = message("m2", "t1", T0 + 1, direction="out", kind="reply", message_id="o@x",
                   status="sent")
    new(h, "t1", 1, message("m1", "t1", message_id="o@x"), ours)
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
