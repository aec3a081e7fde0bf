"""Tests of the router's hot path (dispatcher.domain.routing): what it caches must follow every
change it depends on, its fast computation of an agent's open channels must agree with the rule
it stands for (`Agent.can_take`), and a bucket's two-part order of agents (an in-order run and a
heap) must give the agents in key order.

The cache: the channels an agent handles with some capacity (kept while their configuration
objects stay the same). The scenarios also change, after an agent was served once, what `_serve`
scans (their buckets, a queue's mode), then check what the agent is offered.
"""

from __future__ import annotations

import itertools
import random

from dispatcher.domain.agents import Agent, InterruptionMatrix, Presence
from dispatcher.domain.queues import Mode, Queue
from dispatcher.domain.routing import Bucket, Outcome, Router
from dispatcher.domain.tasks import Channel, Task

T0 = 1_000_000.0
PHONE, EMAIL = Channel.PHONE, Channel.EMAIL
AVAILABLE, BREAK = Presence.AVAILABLE, Presence.BREAK


def task(task_id: str, channel: Channel = EMAIL, queue: str = "q", skills=None) -> Task:
    return Task(id=task_id, channel=channel, queue=queue, customer_id=None, created_at=T0,
                base_skills=dict(skills or {}))


def agent(agent_id: str = "a1", queues=("q",), **kw) -> Agent:
    return Agent(id=agent_id, queues=set(queues), status=AVAILABLE, idle_since=T0, **kw)


def offered(out: Outcome) -> list[tuple[str, str]]:
    return [(o.task_id, o.agent_id) for o in out.offers]


def test_open_channels_agree_with_can_take_in_every_state() -> None:
    """Brute force over what an agent holds, pauses, cannot reach, is engaged on, their status,
    a pending offer, capacity and two interruption matrices."""
    rng = random.Random(15)
    matrices = [InterruptionMatrix(),
                InterruptionMatrix({EMAIL: frozenset({EMAIL}),
                                    PHONE: frozenset({PHONE, EMAIL})})]
    subsets = [set(c) for n in range(3) for c in itertools.combinations(Channel, n)]
    checked = 0
    for matrix in matrices:
        r = Router(matrix=matrix)
        r.put_queue(Queue("q"), T0)
        for i in range(1500):
            a = Agent(id=f"a{i}", queues={"q"},
                      capacity={EMAIL: rng.choice((0, 1, 2, 3)), PHONE: rng.choice((0, 1, 2))},
                      channels=rng.choice(subsets[1:]))
            r.put_agent(a, T0)
            cur = r.agents[a.id]
            cur.status = rng.choice((AVAILABLE, AVAILABLE, AVAILABLE, BREAK))
            cur.disabled = rng.random() < 0.05
            cur.paused = set(rng.choice(subsets)) & cur.channels
            cur.unreachable = set(rng.choice(subsets)) if rng.random() < 0.3 else set()
            cur.engaged = set(rng.choice(subsets)) if rng.random() < 0.2 else set()
            cur.held = {f"h{k}": rng.choice(list(Channel)) for k in range(rng.choice(
                (0, 0, 1, 1, 1, 2, 3)))}
            if rng.random() < 0.1:
                cur.offer_id, cur.offer_channel = "o1", rng.choice(list(Channel))
            expected = {ch for ch in Channel
                        if not cur.disabled and cur.can_take(ch, matrix)}
            assert set(r._open_channels(cur)) == expected, cur
            checked += 1
    assert checked == 3000


def test_open_channels_agree_with_can_take_as_one_agent_changes() -> None:
    """The same agents through many states in turn (what `_open_channels` caches per agent is
    reused from one state to the next), their configuration replaced now and then."""
    rng = random.Random(16)
    matrices = [InterruptionMatrix(),
                InterruptionMatrix({EMAIL: frozenset({EMAIL}),
                                    PHONE: frozenset({PHONE, EMAIL})})]
    subsets = [set(c) for n in range(3) for c in itertools.combinations(Channel, n)]
    r = Router(matrix=matrices[0])
    r.put_queue(Queue("q"), T0)
    checked = 0
    for i in range(4):
        for step in range(800):
            if step % 100 == 0:  # a configuration change replaces channels and capacity
                r.put_agent(Agent(id=f"a{i}", queues={"q"}, channels=rng.choice(subsets[1:]),
                                  capacity={EMAIL: rng.choice((1, 2, 3)),
                                            PHONE: rng.choice((0, 1, 2))},
                                  interruptions=rng.choice((None, matrices[1]))), T0)
            cur = r.agents[f"a{i}"]
            cur.status = rng.choice((AVAILABLE, AVAILABLE, AVAILABLE, BREAK))
            cur.paused = set(rng.choice(subsets)) & cur.channels if rng.random() < 0.2 else set()
            cur.unreachable = set(rng.choice(subsets)) if rng.random() < 0.1 else set()
            cur.engaged = set(rng.choice(subsets)) if rng.random() < 0.1 else set()
            cur.held = {f"h{k}": rng.choice((EMAIL, EMAIL, PHONE)) for k in range(rng.choice(
                (0, 1, 1, 2, 2, 3, 4)))}
            cur.offer_id = "o1" if rng.random() < 0.05 else None
            expected = {ch for ch in Channel if cur.can_take(ch, r.matrix_of(cur))}
            assert set(r._open_channels(cur)) == expected, cur
            checked += 1
    assert checked == 3200


def test_a_new_capacity_is_seen_at_once() -> None:
    r = Router()
    r.put_queue(Queue("q"), T0)
    r.put_agent(agent(capacity={EMAIL: 1, PHONE: 1}), T0)
    first = r.submit(task("t1"), T0)
    r.accept("a1", first.offers[0].id, T0)
    assert offered(r.submit(task("t2"), T0)) == []  # one e-mail at a time: t2 waits
    out = r.put_agent(agent(capacity={EMAIL: 2, PHONE: 1}), T0 + 1)
    assert offered(out) == [("t2", "a1")]


def test_a_channel_handled_again_is_seen_at_once() -> None:
    r = Router()
    r.put_queue(Queue("q"), T0)
    r.put_agent(agent(channels={EMAIL}), T0)
    assert offered(r.submit(task("c1", PHONE), T0)) == []
    assert offered(r.submit(task("t1"), T0)) == [("t1", "a1")]
    out = r.put_agent(agent(channels={EMAIL, PHONE}), T0 + 1)  # with t1 pending: nothing yet
    assert offered(out) == []
    out = r.reject("a1", r.agents["a1"].offer_id, T0 + 2)
    assert offered(out) == [("c1", "a1")]


def test_a_queue_that_starts_pushing_is_served_after_the_agent_was_busy() -> None:
    """The agent was served while `p` pulled; when `p` pushes, the agent freed later is offered
    its task."""
    r = Router()
    r.put_queue(Queue("q"), T0)
    r.put_queue(Queue("p", mode=Mode.PULL), T0)
    r.put_agent(agent(queues=("q", "p")), T0)
    assert offered(r.submit(task("t1", queue="p"), T0)) == []  # pulled, not pushed
    call = r.submit(task("c1", PHONE), T0)
    r.accept("a1", call.offers[0].id, T0)  # on a call: nothing more
    assert offered(r.complete("a1", "c1", T0 + 1)) == []  # free: served, p pulls
    call = r.submit(task("c2", PHONE), T0 + 2)
    r.accept("a1", call.offers[0].id, T0 + 2)
    assert offered(r.put_queue(Queue("p"), T0 + 4)) == []  # pushes now; a1 is on a call
    out = r.complete("a1", "c2", T0 + 5)
    assert offered(out) == [("t1", "a1")]


def test_a_bucket_made_while_the_agent_is_away_is_served_when_back() -> None:
    """A task asking for a skill makes a new bucket; an agent served before it, on a break when
    the task came, is offered it when back."""
    r = Router()
    r.put_queue(Queue("q"), T0)
    r.put_agent(agent(skills={"fr": 5}), T0)
    first = r.submit(task("t1"), T0)
    r.accept("a1", first.offers[0].id, T0)  # served again at once (room left)
    r.set_status("a1", BREAK, T0 + 1)
    assert offered(r.submit(task("c1", PHONE, skills={"fr": 3}), T0 + 2)) == []
    out = r.set_status("a1", AVAILABLE, T0 + 3)
    assert offered(out) == [("c1", "a1")]


def test_an_agent_who_leaves_a_queue_is_not_served_from_it() -> None:
    r = Router()
    r.put_queue(Queue("q"), T0)
    r.put_queue(Queue("other"), T0)
    r.put_agent(agent(queues=("q", "other")), T0)
    for task_id, queue in (("t0", "other"), ("t1", "q")):  # both buckets exist
        out = r.submit(task(task_id, queue=queue), T0)
        r.accept("a1", out.offers[0].id, T0)
    r.set_status("a1", BREAK, T0 + 1)
    assert offered(r.submit(task("t2", queue="other"), T0 + 2)) == []
    r.put_agent(agent(queues=("q",)), T0 + 3)
    assert offered(r.set_status("a1", AVAILABLE, T0 + 4)) == []
    assert offered(r.submit(task("t3"), T0 + 5)) == [("t3", "a1")]


def test_outcomes_do_not_share_their_lists() -> None:
    one, two = Outcome(), Outcome()
    one.events.append("x")  # type: ignore[arg-type]
    one.tasks["t"] = None  # type: ignore[assignment]
    assert two.events == [] and two.tasks == {} and two.offers == [] and two.ended == []
    assert Outcome(declines=[("t", "a")]).declines == [("t", "a")]


def test_a_buckets_agents_come_out_in_key_order_whatever_order_they_came_in() -> None:
    """The run (entries that came in order) and the heap (the rest) give one order: against a
    sorted list of the live entries, under random listings, removals, takes and put-backs."""
    rng = random.Random(7)
    b = Bucket(Queue("q"), EMAIL, {})
    seq = itertools.count()
    idle = 0.0
    for step in range(4000):
        x = rng.random()
        aid = f"a{rng.randrange(60)}"
        if x < 0.55:  # listed again: mostly later than anyone (in order), sometimes earlier
            idle += rng.random()
            key = idle if rng.random() < 0.8 else idle - rng.uniform(0, 50)
            b.list_agent((key, 0, next(seq), aid))
        elif x < 0.8:
            b.agent_live.pop(aid, None)  # what _unlist does
        else:  # take the best few, then put them back
            expected = sorted(b.agent_live.values())
            taken = list(itertools.islice(b.best_agents(), rng.randrange(1, 6)))
            assert taken == expected[:len(taken)], step
            b.put_back(taken)
        assert sorted(b.agent_live.values()) == sorted(
            e for e in [*b.run, *b.agents] if b.agent_live.get(e[3]) is e)
    assert len(b.run) + len(b.agents) <= max(64, 4 * len(b.agent_live)) + 1


def test_the_longest_idle_agent_is_offered_the_task_when_they_joined_out_of_order() -> None:
    """Agents listed with idle times out of order (a restore, a configuration) still come out
    longest idle first, and a decline passes over exactly the agent who declined."""
    r = Router()
    r.put_queue(Queue("q"), T0)
    for agent_id, idle in (("a1", T0 - 10), ("a2", T0 - 50), ("a3", T0 - 30)):
        r.put_agent(Agent(id=agent_id, queues={"q"}, status=AVAILABLE, idle_since=idle), T0)
    out = r.submit(task("t1"), T0)
    assert offered(out) == [("t1", "a2")]
    out = r.reject("a2", out.offers[0].id, T0 + 1)
    assert offered(out) == [("t1", "a3")]
    why = next(e for e in out.events if e.kind == "task.offered").data["explanation"]
    # a2 is listed again only after, but is named all the same (skipped was empty here once)
    assert why["skipped"] == {"a2": "declined"} and why["available"] == 2
    out = r.reject("a3", out.offers[0].id, T0 + 2)
    assert offered(out) == [("t1", "a1")]
    why = next(e for e in out.events if e.kind == "task.offered").data["explanation"]
    assert why["skipped"] == {"a2": "declined", "a3": "declined"}
