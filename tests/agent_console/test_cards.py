"""The customer part of frames encoded once per version of the card (agent_console/cards.py):
a remembered card is the text a fresh encoding gives, a committed write concerning the customer
makes the next frame's card a new encoding (equal to a fresh read of the store), and frames with
cards spliced in are the very strings `messages.dumps` gives; on the real console, a reconnect's
welcome and a history request reuse the offer's encoding."""

from __future__ import annotations

import json

from agent_console import cards
from agent_console import messages as m
from agent_console.cards import Card, Cards, customer_view
from dispatcher.aio import to_future
from dispatcher.domain.tasks import Channel
from dispatcher.service.history import History
from dispatcher.service.history_cache import HistoryCache, WatchedStore
from dispatcher.service.intake import email_identity
from dispatcher.storage.memory import MemoryStore
from tests.agent_console.harness import run, start_console
from tests.agent_console.test_offer_history import cached_core, offered
from tests.dispatcher.service.stacks import build_stack, support_queue


def watched_stack():
    cache = HistoryCache(customers=100)
    inner = MemoryStore()
    stack = build_stack(WatchedStore(inner, cache))
    stack.put_queue(support_queue())
    return stack, History(stack.store, stack.assignment, cache=cache), History(
        inner, stack.assignment), cache


def test_a_remembered_card_is_the_fresh_encoding_until_a_committed_event_changes_it():
    s, cached, fresh, cache = watched_stack()
    s.put_agent("a1", 6)
    task = s.wait(s.intake.submit(Channel.EMAIL, "support", identity=email_identity(
        "ann@example.org"), customer_name="Ann Ünal", attributes={"subject": "Reçu 12"}))
    s.settle()
    customer = task.customer_id
    memo = Cards()
    view = s.wait(cached.view(customer))
    card = memo.of(view)
    assert isinstance(card, Card) and card == customer_view(view)
    assert card.text == m.dumps(customer_view(s.wait(fresh.view(customer))))
    again = s.wait(cached.view(customer))
    assert again is view and memo.of(again) is card  # the same version: encoded once
    assert (memo.hits, memo.misses) == (1, 1)
    # Committed events of that customer: the offer, the answer, the completion.
    s.login("a1")
    offered = memo.of(s.wait(cached.view(customer)))
    assert offered is not card and offered.text != card.text
    assert offered.text == m.dumps(customer_view(s.wait(fresh.view(customer))))
    assert json.loads(offered.text)["timeline"][0]["state"] == "offered"
    s.wait(s.sessions.accept("a1", s.last_offer("a1").id))
    s.settle()
    s.advance(30)
    s.wait(s.sessions.complete("a1", task.id, "solved"))
    s.settle()
    done = memo.of(s.wait(cached.view(customer)))
    assert done.text == m.dumps(customer_view(s.wait(fresh.view(customer))))
    assert json.loads(done.text)["timeline"][0]["disposition"] == "solved"
    assert memo.misses == 3


def test_frames_with_cards_spliced_in_are_the_strings_messages_dumps_gives():
    content = {"id": "c1", "name": "Zoë \"Z\" </script>", "since": 1.5,
               "identities": [{"kind": "email", "value": "z@example.org"}],
               "open_tasks": ["t1"], "timeline": [{"task_id": "t1", "at": 2.0, "x": None}]}
    card = Card(content)
    frames = [
        {"type": "offer", "offer_id": "o1", "task": {"id": "t1"}, "customer": card,
         "answers": {"mode": "off"}},
        {"customer": card, "type": "assigned"},
        {"type": "history", "re": 3, "customer": card},
        {"customer": card},
        {"type": "offer", "customer": None},
        {"a": card, "b": 1, "c": card},
    ]
    for frame in frames:
        plain = {k: dict(v) if type(v) is Card else v for k, v in frame.items()}
        assert cards.dumps(frame) == m.dumps(plain) == m.dumps(frame)


def test_the_memo_is_bounded_and_holds_the_views_it_names():
    memo = Cards(size=2)
    views = [_View(f"c{i}") for i in range(3)]
    encoded = [memo.of(v) for v in views]
    assert len(memo) == 2 and memo.of(views[2]) is encoded[2]
    assert memo.of(views[0]) is not encoded[0]  # the oldest went out: encoded again
    assert memo.of(views[0]) == encoded[0]
    assert Cards(size=0).of(views[1]) == encoded[1]


class _Card:
    def __init__(self, cid: str) -> None:
        self.id, self.name, self.since = cid, "N", 0.0
        self.identities, self.open_tasks = (), ()


class _View:
    def __init__(self, cid: str) -> None:
        self.card, self.timeline = _Card(cid), ()


@run
async def test_the_console_reuses_an_unchanged_card_and_encodes_a_changed_one(tmp_path):
    core, inner, cache = cached_core()
    c = await start_console(tmp_path, core=core)
    fresh = History(inner, core.assignment)
    memo = c.desks.cards
    try:
        client, mail, offer = await offered(c)
        await client.request("accept", offer_id=offer["offer_id"])
        assigned = await client.expect("assigned")
        expected = customer_view(await to_future(fresh.view(mail.customer_id)))
        assert assigned["customer"] == expected != offer["customer"]
        # Nothing of this customer changes: the welcome of a reconnect and a history request
        # carry the assigned frame's card, encoded once.
        misses = memo.misses
        await client.close()
        client = await c.connect("a1")
        assert client.welcome is not None
        assert client.welcome["tasks"][0]["customer"] == expected
        answer = await client.request("history", customer_id=mail.customer_id)
        assert answer["customer"] == expected
        assert memo.misses == misses and memo.hits >= 2
    finally:
        await c.stop()
