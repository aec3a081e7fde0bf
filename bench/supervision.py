"""The supervisors' live state: what it costs the dispatcher.

A benchmark, not a test: it prints figures and never fails on time. The service layer on the
MemoryStore with a virtual clock: Q queues, A agents (each in two queues, half signed in), and
N open tasks (waiting, offered and held). It measures, in the same run:
  - the routing baseline: a decision (submit + offer + accept + complete) with no watcher;
  - the same with the live view listening (`Supervision.on_outcome` on every outcome) and one
    watcher: the per-event cost the live view adds (it should be a flat few percent);
  - one `Supervision.state()`: what each tick costs, at most once a second, whatever the
    number of events in that second. (Reading today's figures, `reports.Today`, is the
    reports' fold of the log: bench/report.py.)

    .venv/bin/python bench/supervision.py [--agents A] [--queues Q] [--tasks N] [--json]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROUNDS = 7
DECISIONS = 2000


def build(agents: int, queues: int, tasks: int, live: bool):
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import Clock

    from dispatcher.domain.agents import Agent
    from dispatcher.domain.queues import Queue
    from dispatcher.domain.routing import Router
    from dispatcher.domain.tasks import Channel
    from dispatcher.service.assignment import Assignment
    from dispatcher.service.configuration import Configuration
    from dispatcher.service.intake import Intake
    from dispatcher.service.sessions import Sessions
    from dispatcher.service.supervision import Supervision
    from dispatcher.storage.memory import MemoryStore

    clock = Clock()
    clock.advance(1_772_532_000.0)
    store = MemoryStore()
    router = Router(new_offer_id=map("o{}".format, itertools.count()).__next__)
    assignment = Assignment(router, store, clock)
    configuration = Configuration(store, assignment.clock, assignment=assignment)
    sessions = Sessions(assignment)
    intake = Intake(assignment, store, clock, new_id=map("t{}".format, itertools.count()).__next__)
    names = [f"q{i}" for i in range(queues)]
    for name in names:
        ensureDeferred(configuration.change_queue(Queue(name)))
    for i in range(agents):
        ensureDeferred(configuration.change_agent(
            Agent(f"a{i}", queues={names[i % queues], names[(i + 1) % queues]})))
    sup = None
    if live:
        sup = Supervision(router, clock)
        assignment.listen(sup.on_outcome)
        sup.watch(lambda state: None)
    # The backlog: every task waits (nobody signed in yet), then half the agents sign in and
    # take what they can (offers, some accepted).
    for i in range(tasks):
        intake.submit(Channel.EMAIL if i % 3 else Channel.PHONE, names[i % queues])
    for i in range(0, agents, 2):
        sessions.login(f"a{i}")
    for offer in list(router.offers.values())[: agents // 4]:
        sessions.accept(offer.agent_id, offer.id)
    return clock, router, intake, sessions, sup, names


def decisions(router, intake, sessions, names, n: int) -> float:
    """Seconds per routing decision cycle: a call arrives and is offered to a signed-in agent
    who accepts and completes it (the agents signed in stay free of backlog: queue `free`)."""
    from dispatcher.domain.tasks import Channel

    start = time.perf_counter()
    for _ in range(n):
        task = intake.submit(Channel.PHONE, "free").result
        offer_id = router.tasks[task.id].offer_id
        agent_id = router.offers[offer_id].agent_id
        sessions.accept(agent_id, offer_id)
        sessions.complete(agent_id, task.id, "done")
    return (time.perf_counter() - start) / n


def measure(agents: int, queues: int, tasks: int) -> dict:
    from dispatcher.domain.agents import Agent
    from dispatcher.domain.queues import Queue

    out: dict = {"agents": agents, "queues": queues, "open_tasks": tasks}
    per: dict[str, list[float]] = {"baseline": [], "live": []}
    for _ in range(ROUNDS):
        for mode in ("baseline", "live"):
            clock, router, intake, sessions, sup, names = build(agents, queues, tasks,
                                                                mode == "live")
            assignment = sessions.assignment
            router.put_queue(Queue("free"), clock.seconds())
            for i in range(8):
                assignment.apply(router.put_agent(Agent(f"f{i}", queues={"free"}),
                                                  clock.seconds()))
                sessions.login(f"f{i}")
            gc.collect()
            per[mode].append(decisions(router, intake, sessions, names, DECISIONS))
            if sup is not None:
                t0 = time.perf_counter()
                for _ in range(20):
                    sup.state()
                out.setdefault("state_ms", []).append((time.perf_counter() - t0) / 20 * 1e3)
                out["waiting"] = sum(q.waiting for q in sup.state().queues)
    base, live = statistics.median(per["baseline"]), statistics.median(per["live"])
    out["decision_us_baseline"] = base * 1e6
    out["decision_us_live"] = live * 1e6
    out["live_over_baseline"] = live / base
    out["state_ms"] = statistics.median(out["state_ms"])

    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--queues", type=int, default=10)
    p.add_argument("--tasks", type=int, default=5000)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    figures = measure(a.agents, a.queues, a.tasks)
    if a.json:
        print(json.dumps(figures))
        return
    print(f"live view, {a.agents} agents, {a.queues} queues, {a.tasks} open tasks "
          f"({figures['waiting']} waiting), medians of {ROUNDS} rounds:")
    print(f"  routing decision cycle, no live view   {figures['decision_us_baseline']:8.1f} us")
    print(f"  same, live view listening + 1 watcher  {figures['decision_us_live']:8.1f} us"
          f"  (x{figures['live_over_baseline']:.3f})")
    print(f"  one live state (a tick, <= 1/s)        {figures['state_ms']:8.2f} ms")



if __name__ == "__main__":
    main()
