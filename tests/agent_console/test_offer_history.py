"""The customer card of offers and assigned frames, with the history cache wired as `serve`
wires it (service/history_cache.py): what the agent's socket receives equals a fresh read of
the store at each step, and the frames were served from memory, not by a read per frame."""

from __future__ import annotations

import itertools

from agent_console.session import customer_view
from dispatcher.aio import to_future
from dispatcher.domain.routing import Router
from dispatcher.service.assignment import Assignment
from dispatcher.service.configuration import Configuration
from dispatcher.service.history import History
from dispatcher.service.history_cache import HistoryCache, WatchedStore
from dispatcher.service.intake import Intake
from dispatcher.service.queries import Queries
from dispatcher.service.sessions import Sessions
from dispatcher.storage.memory import MemoryStore
from tests.agent_console.harness import Core, LoopClock, run, start_console


def cached_core() -> tuple[Core, MemoryStore, HistoryCache]:
    """`harness.new_core` with the store watched by a history cache, as App wires them."""
    inner, clock, cache = MemoryStore(), LoopClock(), HistoryCache(customers=100)
    store = WatchedStore(inner, cache)
    router = Router(new_offer_id=map("o{}".format, itertools.count(1)).__next__)
    assignment = Assignment(router, store, clock)
    core = Core(store, clock, router, assignment,  # type: ignore[arg-type]
                Intake(assignment, store, clock,
                       new_id=map("t{}".format, itertools.count(1)).__next__),
                Sessions(assignment), Queries(router, store),
                Configuration(store, assignment.clock, assignment=assignment),
                History(store, assignment, cache=cache))
    return core, inner, cache


async def offered(c, agent: str = "a1", subject: str = "Question", text: str = "Hello"):
    """`agent` signs in on the console, a mail comes, and its offer reaches them: (their client,
    the mail's task, the offer frame)."""
    await c.put_agent(agent)
    client = await c.connect(agent)
    mail = await c.mail(subject=subject, text=text)
    await client.request("presence", status="available")
    return client, mail, await client.expect("offer")


@run
async def test_offers_carry_the_cached_card_equal_to_a_fresh_read(tmp_path):
    core, inner, cache = cached_core()
    c = await start_console(tmp_path, core=core)
    fresh = History(inner, core.assignment)
    await c.put_agent("a1")
    try:
        client = await c.connect("a1")
        first = await c.mail(subject="Earlier question", text="First line\nsecond")
        await client.request("presence", status="available")
        offer = await client.expect("offer")
        assert (cache.reads, cache.born) == (0, 1)  # a first contact: the card without a read
        reads = cache.reads
        expected = customer_view(await to_future(fresh.view(first.customer_id)))
        assert offer["customer"] == expected
        assert [e["task_id"] for e in expected["timeline"]] == [first.id]
        assert (await client.request("accept", offer_id=offer["offer_id"]))["type"] == "ok"
        assigned = await client.expect("assigned")
        assert assigned["customer"] == customer_view(
            await to_future(fresh.view(first.customer_id)))
        assert assigned["customer"]["timeline"][0]["state"] == "assigned"
        await client.request("complete", task_id=first.id, disposition="solved")
        await client.expect("task_closed")
        await client.request("presence", status="available")
        second = await c.mail(subject="Again", text="Any news?")
        offer = await client.expect("offer")
        assert offer["task"]["id"] == second.id
        assert offer["customer"] == customer_view(
            await to_future(fresh.view(second.customer_id)))
        assert [e["task_id"] for e in offer["customer"]["timeline"]] == [second.id, first.id]
        assert offer["customer"]["timeline"][1]["disposition"] == "solved"
        assert cache.reads == reads  # the assigned frame and the returning customer: memory
        assert cache.hits >= 2
    finally:
        await c.stop()


@run
async def test_a_cached_card_goes_into_the_offer_at_once(tmp_path, monkeypatch):
    """The writer takes a cached card as it is (`History.cached`), with no Deferred wrapped in
    an asyncio Future; only a customer the cache does not hold goes through `History.view`."""
    core, inner, cache = cached_core()
    views: list[str] = []
    view = core.history.view
    monkeypatch.setattr(core.history, "view", lambda cid, *a: views.append(cid) or view(cid, *a))
    c = await start_console(tmp_path, core=core)
    try:
        client, mail, offer = await offered(c)
        assert offer["customer"] == customer_view(
            await to_future(History(inner, core.assignment).view(mail.customer_id)))
        await client.request("accept", offer_id=offer["offer_id"])
        assert (await client.expect("assigned"))["customer"]["id"] == mail.customer_id
        assert views == [] and cache.hits >= 2
        cache.drop(mail.customer_id)  # not cached: the frame waits for a read
        await client.close()
        client = await c.connect("a1")
        assert client.welcome["tasks"][0]["customer"]["id"] == mail.customer_id
        assert views == [mail.customer_id]
    finally:
        await c.stop()
