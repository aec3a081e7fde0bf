"""What an agent reads of a task (dispatcher.service.conversation) on the MemoryStore: the
thread and the internal notes in one timeline, pages from the newest, HTML with its inline
images, attachments; and who may read it (the holder and supervisors, nobody else)."""

from __future__ import annotations

import pytest

from dispatcher.domain.errors import Forbidden, InvalidValue
from dispatcher.service.collaboration import Collaboration
from dispatcher.service.conversation import Conversation, Viewer
from dispatcher.service.mail import InboundMail, Mail
from dispatcher.service.ports import MailAttachment
from dispatcher.storage.memory import MemoryStore
from tests.dispatcher.service.stacks import Stack, failure_of

ANN, BOB = Viewer("ann", "agent"), Viewer("bob", "agent")
BOSS = Viewer("sue", "supervisor")


class Desk:
    def __init__(self, stack: Stack) -> None:
        stack.put_agent("ann", 5, capacity={"email": 3})
        stack.put_agent("bob", 5, capacity={"email": 3})
        self.stack = stack
        self.mail = Mail(stack.assignment, stack.store, stack.clock, stack.intake)
        self.collab = Collaboration(stack.assignment, stack.store, _Collab(stack.store),
                                    stack.clock, stack.intake, stack.sessions, self.mail)
        self.conversation = Conversation(stack.router, stack.store)

    def receive(self, subject: str, **kw) -> str:
        kw.setdefault("message_id", f"{subject}@c.org")
        return self.stack.wait(self.mail.receive(InboundMail(
            raw=b"raw", queue="support", envelope_from="al@c.org", from_address="al@c.org",
            subject=subject, **kw))).task_id


class _Collab:
    """Only the notes of the collaboration store (the conversation reads notes from the
    task's trail)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def add_note(self, note, changes):
        d = self.store.record(changes)
        return d.addCallback(lambda _: 1)


@pytest.fixture
def desk(stack: Stack) -> Desk:
    return Desk(stack)


def held_by_ann(desk: Desk, **kw) -> str:
    task_id = desk.receive("Order 7", **kw)
    desk.stack.login("ann")
    desk.stack.wait(desk.stack.sessions.accept("ann", desk.stack.last_offer("ann").id))
    return task_id


def test_the_thread_and_notes_in_one_timeline(desk: Desk) -> None:
    task_id = held_by_ann(desk, text="Where is my order?")
    desk.stack.advance(10)
    desk.stack.wait(desk.collab.note(task_id, "Carrier says Monday", "agent:ann", "ann"))
    desk.stack.advance(10)
    desk.receive("Re: Order 7 [#SB-000001]", text="Any news?", cc_addrs=("bo@c.org",),
                 authenticated=True,
                 in_reply_to="Order 7@c.org")
    page = desk.stack.wait(desk.conversation.page(ANN, task_id))
    assert [(e.kind, e.internal) for e in page.entries] == [
        ("customer", False), ("ack", False), ("note", True), ("customer", False)]
    assert page.entries[0].text == "Where is my order?"
    assert page.entries[1].direction == "out" and page.entries[1].status == "queued"
    assert page.entries[2].author == "agent:ann" and page.entries[2].text == "Carrier says Monday"
    assert page.entries[3].cc == ("bo@c.org",)
    assert page.more is False


def test_pages_from_the_newest(desk: Desk) -> None:
    task_id = held_by_ann(desk)
    for n in range(5):
        desk.stack.advance(1)
        desk.receive(f"Re: Order 7 [#SB-000001] {n}", text=f"message {n}", authenticated=True)
    newest = desk.stack.wait(desk.conversation.page(ANN, task_id, limit=3))
    assert [e.text for e in newest.entries] == ["message 2", "message 3", "message 4"]
    assert newest.more
    earlier = desk.stack.wait(desk.conversation.page(ANN, task_id, newest.entries[0].id, 3))
    assert [e.kind for e in earlier.entries] == ["ack", "customer", "customer"]
    assert [e.text for e in earlier.entries][1:] == ["message 0", "message 1"]
    first = desk.stack.wait(desk.conversation.page(ANN, task_id, earlier.entries[0].id, 3))
    assert [e.kind for e in first.entries] == ["customer"] and not first.more
    assert failure_of(desk.conversation.page(ANN, task_id, limit=0)).check(InvalidValue)
    assert failure_of(desk.conversation.page(ANN, task_id, "nope")).check(InvalidValue)


def test_only_the_holder_and_supervisors_read(desk: Desk) -> None:
    task_id = held_by_ann(desk)
    assert desk.stack.wait(desk.conversation.page(BOSS, task_id)).entries
    assert failure_of(desk.conversation.page(BOB, task_id)).check(Forbidden)
    assert failure_of(desk.conversation.page(Viewer("ann", "integration"), task_id)).check(
        Forbidden)
    waiting = desk.receive("Another one")  # queued: nobody holds it yet
    assert failure_of(desk.conversation.page(BOB, waiting)).check(Forbidden)
    message_id = desk.stack.wait(desk.conversation.page(ANN, task_id)).entries[0].id
    assert failure_of(desk.conversation.attachment(BOB, message_id, 0)).check(Forbidden)
    assert failure_of(desk.conversation.html(BOB, message_id, str)).check(Forbidden)
    desk.stack.wait(desk.stack.sessions.complete("ann", task_id))
    assert failure_of(desk.conversation.page(ANN, task_id)).check(Forbidden)  # over


def test_html_with_inline_images_and_attachments(desk: Desk) -> None:
    files = (MailAttachment("label.png", "image/png", 3, b"PNG", None, "lbl@c"),
             MailAttachment("invoice.pdf", "application/pdf", 4, b"%PDF"))
    task_id = held_by_ann(desk, text="", html='<p onclick="x()">See <img src="cid:lbl@c" '
                          'alt="l"><script>evil()</script></p>', attachments=files)
    entry = desk.stack.wait(desk.conversation.page(ANN, task_id)).entries[0]
    assert entry.has_html and entry.text.startswith("See")
    assert [(f.filename, f.size, f.inline) for f in entry.files] == [
        ("label.png", 3, True), ("invoice.pdf", 4, False)]
    html = desk.stack.wait(desk.conversation.html(ANN, entry.id, lambda n: f"/file/{n}"))
    assert html == '<p>See <img src="/file/0" alt="l"></p>'
    got = desk.stack.wait(desk.conversation.attachment(ANN, entry.id, 1))
    assert (got.filename, got.content) == ("invoice.pdf", b"%PDF")
    assert failure_of(desk.conversation.attachment(ANN, entry.id, 2)).check(InvalidValue)
