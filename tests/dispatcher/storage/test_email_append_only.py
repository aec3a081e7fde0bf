"""E-mail messages are evidence (migration 0008): `email_messages`, `email_attachments` and the
delivery statuses appended to `email_statuses` refuse UPDATE and DELETE in the database itself,
on SQLite and PostgreSQL, like the event logs; a delivery attempt or a bounce appends a status
and leaves the message row as it was stored, while the store reads the newest status. The
migration upgrades a database holding messages without touching them, and its downgrade gives
each message its newest status back."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dispatcher.domain import events as ev
from dispatcher.domain.events import Event
from dispatcher.domain.tasks import Channel, Task
from dispatcher.service.ports import (
    Changes,
    Identity,
    MailAttachment,
    MailMessage,
    NewMail,
    OutboxItem,
)
from dispatcher.storage import schema
from dispatcher.storage import tables as t
from dispatcher.storage.engine import make_engine
from tests.dispatcher.storage.wiring import Wiring, wire

T0 = 1_700_000_000.0
ALICE = Identity("email", "alice@example.org")


def message(mid: str, **kw) -> MailMessage:
    return MailMessage(id=mid, task_id="t1", direction=kw.pop("direction", "in"),
                       kind=kw.pop("kind", "customer"), created_at=kw.pop("at", T0),
                       raw=b"Subject: x\r\n\r\nbody\r\n", **kw)


def seed(w: Wiring) -> int:
    """Task t1 with the customer's message m1 (one attachment) and our reply m2, queued in the
    outbox; returns the outbox id."""
    task = Task(id="t1", channel=Channel.EMAIL, queue="support", customer_id=None, created_at=T0)
    reply = message("m2", direction="out", kind="reply", status="queued", at=T0 + 1)
    item = OutboxItem("email", "t1", {"message": "m2", "mail_from": "s@x", "rcpt": ["a@y"]}, T0)
    w.wait(w.store.create_mail_task(NewMail(
        task, [Event(ev.TASK_CREATED, T0, "t1")],
        [message("m1", attachments=(MailAttachment("a.txt", "text/plain", 2, b"hi"),)), reply],
        [item]), ALICE, "Alice"))
    [due] = w.wait(w.store.due_mail(T0 + 1, 10))
    return due.outbox_id


@pytest.mark.parametrize("statement", [
    "UPDATE email_messages SET subject = 'forged'",
    "UPDATE email_messages SET status = 'sent'",
    "DELETE FROM email_messages",
    "UPDATE email_attachments SET content = NULL",
    "DELETE FROM email_attachments",
    "UPDATE email_statuses SET status = 'sent'",
    "DELETE FROM email_statuses",
])
def test_messages_attachments_and_statuses_are_append_only(wiring: Wiring,
                                                           statement: str) -> None:
    outbox_id = seed(wiring)
    wiring.wait(wiring.store.settle_mail(outbox_id, "m2", "retrying", 1, T0 + 60, "451 later",
                                         [Event("email.retry", T0 + 2, "t1")]))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), wiring.engine.begin() as conn:
        conn.exec_driver_sql(statement)
    with wiring.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(t.email_messages)) == 2
        assert conn.scalar(sa.select(t.email_attachments.c.content)) == b"hi"
        assert conn.scalar(sa.select(t.email_statuses.c.status)) == "retrying"


def test_a_delivery_status_is_appended_and_the_message_row_never_changes(
        wiring: Wiring) -> None:
    outbox_id = seed(wiring)
    with wiring.engine.connect() as conn:
        stored = conn.execute(sa.select(t.email_messages).order_by(t.email_messages.c.id)).all()
    wiring.wait(wiring.store.settle_mail(outbox_id, "m2", "retrying", 1, T0 + 60, "451 later",
                                         [Event("email.retry", T0 + 2, "t1")]))
    wiring.wait(wiring.store.settle_mail(outbox_id, "m2", "sent", 2, None, None,
                                         [Event("email.sent", T0 + 62, "t1")]))
    report = message("m3", kind="dsn", at=T0 + 90)
    bounced = Event("email.bounced", T0 + 90, "t1", data={"message": "m2"})
    wiring.wait(wiring.store.mark_mail("m2", "bounced", "bounced: 550 unknown", [report],
                                       Changes(events=[bounced])))
    with wiring.engine.connect() as conn:
        again = conn.execute(sa.select(t.email_messages).where(t.email_messages.c.id != "m3")
                             .order_by(t.email_messages.c.id)).all()
        statuses = conn.execute(sa.select(t.email_statuses.c.message_id, t.email_statuses.c.at,
                                          t.email_statuses.c.status, t.email_statuses.c.error)
                                .order_by(t.email_statuses.c.id)).all()
        outbox = conn.execute(sa.select(t.outbox.c.state, t.outbox.c.attempts)).one()
    assert again == stored  # as inserted, to the byte
    assert [tuple(s) for s in statuses] == [
        ("m2", T0 + 2, "retrying", "451 later"), ("m2", T0 + 62, "sent", None),
        ("m2", T0 + 90, "bounced", "bounced: 550 unknown")]
    assert tuple(outbox) == ("sent", 2)  # the outbox is work, not evidence: it is updated
    got = {m.id: (m.status, m.error) for m in wiring.wait(wiring.store.mail_messages("t1"))}
    assert got == {"m1": ("received", None), "m2": ("bounced", "bounced: 550 unknown"),
                   "m3": ("received", None)}
    light = wiring.wait(wiring.store.mail_messages("t1", content=False))
    assert [(m.id, m.status) for m in light][1] == ("m2", "bounced")
    one = wiring.wait(wiring.store.mail_message(id="m2"))
    assert (one.status, one.error) == ("bounced", "bounced: 550 unknown")


MESSAGE_COLUMNS = ("id, task_id, direction, kind, created_at, message_id, in_reply_to, refs, "
                   "peer, from_addr, to_addrs, subject, text_body, html_body, raw, defects, "
                   "malformed, source, status, error, cc_addrs, reply_to")


def test_0008_upgrades_a_0006_database_holding_messages(empty_url: str) -> None:
    """Messages stored before keep their row and their status (the one last set in place);
    afterwards they refuse changes, new statuses are appended, and the downgrade writes each
    message's newest status back into its row."""
    schema.upgrade(empty_url, "0006")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            for mid, direction, status, error in (("m1", "in", "received", None),
                                                  ("m2", "out", "dead", "550 no such user")):
                conn.execute(sa.text(
                    f"INSERT INTO email_messages ({MESSAGE_COLUMNS}) VALUES (:id, 't1', :d,"
                    " 'customer', 1.0, NULL, NULL, '[]', 'a@x', 'a@x', '[]', 's', 't', '',"
                    " :raw, '[]', false, NULL, :st, :err, '[]', NULL)"),
                    {"id": mid, "d": direction, "raw": b"R", "st": status, "err": error})
            conn.execute(sa.text(
                "INSERT INTO email_attachments (message_id, position, filename, content_type,"
                " size, content, path, content_id) VALUES ('m1', 0, 'a.txt', 'text/plain', 2,"
                " :c, NULL, NULL)"), {"c": b"hi"})
            before = conn.execute(sa.text(
                f"SELECT {MESSAGE_COLUMNS} FROM email_messages ORDER BY id")).all()
        schema.upgrade(empty_url, "0008")
        with engine.connect() as conn:
            assert conn.execute(sa.text(
                f"SELECT {MESSAGE_COLUMNS} FROM email_messages ORDER BY id")).all() == before
            assert conn.execute(sa.text("SELECT count(*) FROM email_statuses")).scalar() == 0
        for statement in ("UPDATE email_messages SET status = 'sent'",
                          "DELETE FROM email_attachments"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
                conn.exec_driver_sql(statement)
        schema.upgrade(empty_url)  # the store reads the head schema
        w = wire(empty_url)
        try:
            got = {m.id: (m.status, m.error) for m in w.wait(w.store.mail_messages("t1"))}
            assert got == {"m1": ("received", None), "m2": ("dead", "550 no such user")}
        finally:
            w.close()
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO email_statuses (message_id, at, status, error)"
                                 " VALUES ('m2', 2.0, 'retrying', 'x'), ('m2', 3.0, 'sent', NULL)"))
        schema.downgrade(empty_url, "0007")
        engine.dispose()
        assert "email_statuses" not in set(sa.inspect(engine).get_table_names())
        with engine.begin() as conn:
            rows = conn.execute(sa.text(
                "SELECT id, status, error FROM email_messages ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [("m1", "received", None), ("m2", "sent", None)]
            conn.execute(sa.text("UPDATE email_messages SET subject = 'no trigger left'"))
    finally:
        engine.dispose()
