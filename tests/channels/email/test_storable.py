"""Text that leaves the e-mail edge with NUL or undecoded bytes (lone surrogates) never makes
a commit fail for ever (dispatcher/storage/sql.py `storable`), on SQLite and PostgreSQL: the
failures that answered 451 to every retry of a real message."""

from __future__ import annotations

import pytest

from dispatcher.domain.events import Event
from dispatcher.service.ports import Changes, MailAttachment, MailMessage, NewMail
from dispatcher.storage import schema
from tests.dispatcher.storage.test_store_contract import ALICE, T0, created, make_task
from tests.dispatcher.storage.wiring import wire

BAD = "J\udcc3\udcb6rg\x00 M\x00"  # what `email` made of `"J\xc3\xb6rg"`, and a NUL


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    schema.upgrade(url)
    return url


def test_nul_and_surrogates_are_stored_cleaned_not_refused(url: str) -> None:
    w = wire(url)
    try:
        task = make_task("t1", attributes={"subject": BAD, "preview": [BAD]})
        msg = MailMessage(id="m1", task_id="t1", direction="in", kind="customer",
                          created_at=T0, raw=b"Subject: \x00\xff\r\n\r\n\x00", subject=BAD,
                          text=BAD, html=BAD, from_addr="a@x.test", defects=(BAD,),
                          attachments=(MailAttachment(BAD, "image/png", 2, b"\x00\xff"),))
        events = [*created(task), Event("email.received", T0, "t1", data={"subject": BAD})]
        task.customer_id = w.wait(w.store.create_mail_task(
            NewMail(task, events, [msg]), ALICE, BAD)).customer_id
        w.wait(w.store.record(Changes(tasks=[task], events=[
            Event("task.note", T0 + 1, "t1", data={"text": BAD})])))
        [stored] = w.wait(w.store.mail_messages("t1"))
        assert stored.raw == b"Subject: \x00\xff\r\n\r\n\x00"  # bytes are kept as they came
        assert stored.attachments[0].content == b"\x00\xff"
        for text in (stored.subject, stored.text, stored.html, stored.defects[0],
                     stored.attachments[0].filename):
            assert text.startswith("J") and "rg M" in text and "\x00" not in text
            text.encode("utf-8")
        customer = w.wait(w.store.get_customer(task.customer_id))
        assert "\x00" not in customer.name and customer.name.endswith("rg M")
        trail = w.wait(w.store.task_events("t1"))
        assert "\x00" not in str([e.data for e in trail])
    finally:
        w.close()
