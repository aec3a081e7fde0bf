"""Benchmark of the router (dispatcher.domain.routing), in process: decisions per second and the
cost of one decision as the queue depth grows. A benchmark, not a test: it prints figures and
never fails on time.

Model: N agents (default 5,000) in Q queues (default 200). Each queue requires 1-2 of ~30 skills
at levels 1-6 (intake copies the queue's requirement into each task, as the service does); a
quarter of the queues have an escalation step (after 60 s, one level less). Each agent has 3-8
skills, qualifies for the 3-6 queues they belong to, and holds 1 call or 3 e-mails (default
capacity and interruption matrix: a call may come on top of e-mails).

For each depth D (default 1k, 10k, 100k waiting tasks) a fresh router is preloaded until D tasks
wait (every agent busy as far as their queues' work allows), then a steady flow runs: while
depth >= D a random held task is completed (the agent takes the best waiting task: a decision),
otherwise a task arrives (queued or offered: a decision); every offer is accepted at once. The
depth therefore stays at D (+- 1). Each router call is timed with time.perf_counter_ns.

A *decision* is a `submit` or a `complete`. `accept` calls (the agent may be served again when
they still have room) are timed and reported apart. `decisions_per_second` counts decisions over
the time spent in every router call of the run, accepts included (the conservative figure);
`decision_calls_per_second` over the time of the decision calls alone.

    .venv/bin/python bench/routing.py                      # full run, < ~2 min
    .venv/bin/python bench/routing.py --agents 500 --queues 40 --depths 1000,10000 \\
        --decisions 20000                                  # a quick one
    .venv/bin/python bench/routing.py --json               # one JSON object on stdout
    .venv/bin/python bench/routing.py --profile 10000      # cProfile of the hot path
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.queues import AgentChoice, EscalationStep, Queue
from dispatcher.domain.routing import Outcome, Router
from dispatcher.domain.tasks import Channel, Task

DEFAULT_AGENTS = 5_000
DEFAULT_QUEUES = 200
DEFAULT_SKILLS = 30
DEFAULT_DEPTHS = (1_000, 10_000, 100_000)
DEFAULT_DECISIONS = 100_000
WARM_UP_SHARE = 0.1  # of --decisions, run before measuring
FLAT_P99_RATIO = 2.0  # p99 at the deepest / p99 at the shallowest depth, to call it flat
TICK = 0.001  # simulated seconds between two outside events
T0 = 1_750_000_000.0
PHONE_SHARE = 0.5
HIGHEST_SKILL_SHARE = 0.2
ESCALATING_SHARE = 0.25


@dataclass
class Timings:
    decisions: list[int] = field(default_factory=list)  # ns per submit / complete
    submits: list[int] = field(default_factory=list)
    completes: list[int] = field(default_factory=list)
    accepts: list[int] = field(default_factory=list)


def build(args: argparse.Namespace, rng: random.Random) -> Router:
    """A router with the queues and the agents, everybody available, nothing waiting."""
    router = Router()
    skills = [f"s{i:02d}" for i in range(args.skills)]
    queues: list[Queue] = []
    for i in range(args.queues):
        req = {s: rng.randint(1, 6) for s in rng.sample(skills, rng.randint(1, 2))}
        steps = ()
        if rng.random() < ESCALATING_SHARE:
            steps = (EscalationStep(60.0, {s: max(0, lvl - 1) for s, lvl in req.items()}),)
        choice = (AgentChoice.HIGHEST_SKILL if rng.random() < HIGHEST_SKILL_SHARE
                  else AgentChoice.LONGEST_IDLE)
        q = Queue(f"q{i:03d}", requirement=req, steps=steps, agent_choice=choice)
        queues.append(q)
        router.put_queue(q, T0)
    for i in range(args.agents):
        mine = rng.sample(queues, rng.randint(3, 6))
        have: dict[str, int] = {}
        for q in mine:
            for s, lvl in q.requirement.items():
                have[s] = max(have.get(s, 0), rng.randint(lvl, 10))
        while len(have) < rng.randint(3, 8):
            have.setdefault(rng.choice(skills), rng.randint(0, 10))
        agent = Agent(id=f"a{i:05d}", skills=have, queues={q.name for q in mine},
                      status=Presence.AVAILABLE, idle_since=T0 - rng.random() * 600)
        router.put_agent(agent, T0)
    return router


class Flow:
    """Arrivals and completions around one router, keeping the count of waiting tasks."""

    def __init__(self, router: Router, rng: random.Random) -> None:
        self.router = router
        self.rng = rng
        self.queues = sorted(router.queues.values(), key=lambda q: q.name)
        self.now = T0
        self.seq = 0
        self.waiting = 0
        self.held: list[tuple[str, str]] = []  # (agent id, task id) of assigned tasks

    def new_task(self) -> Task:
        rng = self.rng
        self.seq += 1
        q = self.queues[rng.randrange(len(self.queues))]
        channel = Channel.PHONE if rng.random() < PHONE_SHARE else Channel.EMAIL
        deadline = None
        if channel is Channel.EMAIL:
            deadline = self.now + rng.uniform(3600.0, 48 * 3600.0)
        return Task(id=f"t{self.seq}", channel=channel, queue=q.name, customer_id=None,
                    created_at=self.now, base_skills=dict(q.requirement),
                    priority=rng.choice((0, 0, 0, 0, 0, 0, 1, 2)), deadline=deadline)

    def accept_all(self, out: Outcome, t: Timings | None) -> None:
        """Accept every offer of `out` at once, and those the accepts lead to."""
        pending = list(out.offers)
        router, clock = self.router, time.perf_counter_ns
        while pending:
            offer = pending.pop()
            t0 = clock()
            res = router.accept(offer.agent_id, offer.id, self.now)
            t1 = clock()
            if t is not None:
                t.accepts.append(t1 - t0)
            self.held.append((offer.agent_id, offer.task_id))
            self.waiting -= len(res.offers)
            pending.extend(res.offers)

    def arrive(self, t: Timings | None) -> None:
        task = self.new_task()
        clock = time.perf_counter_ns
        t0 = clock()
        out = self.router.submit(task, self.now)
        t1 = clock()
        if t is not None:
            t.submits.append(t1 - t0)
            t.decisions.append(t1 - t0)
        if not out.offers:
            self.waiting += 1
        self.accept_all(out, t)

    def finish(self, t: Timings | None) -> None:
        held = self.held
        i = self.rng.randrange(len(held))
        held[i], held[-1] = held[-1], held[i]
        agent_id, task_id = held.pop()
        clock = time.perf_counter_ns
        t0 = clock()
        out = self.router.complete(agent_id, task_id, self.now)
        t1 = clock()
        if t is not None:
            t.completes.append(t1 - t0)
            t.decisions.append(t1 - t0)
        self.waiting -= len(out.offers)
        self.accept_all(out, t)

    def step(self, depth: int, t: Timings | None) -> None:
        self.now += TICK
        if self.waiting >= depth and self.held:
            self.finish(t)
        else:
            self.arrive(t)

    def preload(self, depth: int) -> None:
        while self.waiting < depth:
            self.now += TICK
            self.arrive(None)


def pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return float(s[min(len(s) - 1, int(q * len(s)))])


def run_depth(args: argparse.Namespace, depth: int) -> dict:
    rng = random.Random(args.seed)
    t_build = time.perf_counter()
    router = build(args, rng)
    flow = Flow(router, rng)
    flow.preload(depth)
    setup_s = time.perf_counter() - t_build
    for _ in range(int(args.decisions * WARM_UP_SHARE)):
        flow.step(depth, None)
    if args.gc == "freeze":
        gc.collect()
        gc.freeze()
    elif args.gc == "off":
        gc.collect()
        gc.disable()
    t = Timings()
    wall0 = time.perf_counter()
    while len(t.decisions) < args.decisions:
        flow.step(depth, t)
    wall = time.perf_counter() - wall0
    gc.enable()
    gc.unfreeze()
    in_router_ns = sum(t.decisions) + sum(t.accepts)
    n = len(t.decisions)
    return {
        "depth": depth,
        "waiting_at_end": sum(1 for _ in _waiting(router)),
        "decisions": n,
        "submits": len(t.submits),
        "completes": len(t.completes),
        "accepts": len(t.accepts),
        "decisions_per_second": round(n / (in_router_ns / 1e9)),
        "decision_calls_per_second": round(n / (sum(t.decisions) / 1e9)),
        "loop_decisions_per_second": round(n / wall),
        "median_ns": pct(t.decisions, 0.5),
        "p99_ns": pct(t.decisions, 0.99),
        "p999_ns": pct(t.decisions, 0.999),
        "max_ns": float(max(t.decisions)),
        "mean_ns": round(statistics.fmean(t.decisions)),
        "submit_median_ns": pct(t.submits, 0.5),
        "submit_p99_ns": pct(t.submits, 0.99),
        "complete_median_ns": pct(t.completes, 0.5),
        "complete_p99_ns": pct(t.completes, 0.99),
        "accept_median_ns": pct(t.accepts, 0.5),
        "accept_p99_ns": pct(t.accepts, 0.99),
        "setup_seconds": round(setup_s, 2),
    }


def _waiting(router: Router):
    for name in router.queues:
        yield from router.waiting(name)


def profile(args: argparse.Namespace, depth: int) -> str:
    rng = random.Random(args.seed)
    flow = Flow(build(args, rng), rng)
    flow.preload(depth)
    for _ in range(int(args.decisions * WARM_UP_SHARE)):
        flow.step(depth, None)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.decisions):
        flow.step(depth, None)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
    return buf.getvalue()


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=DEFAULT_AGENTS)
    p.add_argument("--queues", type=int, default=DEFAULT_QUEUES)
    p.add_argument("--skills", type=int, default=DEFAULT_SKILLS)
    p.add_argument("--depths", default=",".join(str(d) for d in DEFAULT_DEPTHS),
                   help="comma-separated queue depths (waiting tasks)")
    p.add_argument("--decisions", type=int, default=DEFAULT_DECISIONS,
                   help="decisions measured per depth")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--gc", choices=("on", "freeze", "off"), default="on",
                   help="garbage collector while measuring: on (default), freeze (gc.freeze() "
                        "after the preload, as a server could after its restore), off")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    p.add_argument("--profile", type=int, metavar="DEPTH",
                   help="print a cProfile of --decisions steps at DEPTH instead")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.profile:
        print(profile(args, args.profile))
        return 0
    depths = [int(d) for d in args.depths.split(",") if d]
    results = []
    for depth in depths:
        res = run_depth(args, depth)
        results.append(res)
        if not args.json:
            print(f"depth {depth:>7,}: {res['decisions_per_second']:>9,} decisions/s "
                  f"(decision calls alone {res['decision_calls_per_second']:,}/s); "
                  f"median {res['median_ns'] / 1000:.1f} us, p99 {res['p99_ns'] / 1000:.1f} us, "
                  f"p99.9 {res['p999_ns'] / 1000:.1f} us; accept median "
                  f"{res['accept_median_ns'] / 1000:.1f} us "
                  f"[{res['submits']:,} submits, {res['completes']:,} completes, "
                  f"{res['accepts']:,} accepts; waiting at end {res['waiting_at_end']:,}; "
                  f"setup {res['setup_seconds']} s]", flush=True)
    ratio = results[-1]["p99_ns"] / results[0]["p99_ns"] if len(results) > 1 else 1.0
    by_depth = {r["depth"]: r for r in results}
    headline_depth = 10_000 if 10_000 in by_depth else None
    if headline_depth is not None:
        headline = by_depth[headline_depth]["decisions_per_second"]
        headline_of = "depth 10000"
    else:
        headline = round(statistics.fmean(r["decisions_per_second"] for r in results))
        headline_of = "mean over depths"
    summary = {
        "decisions_per_second": headline,
        "decisions_per_second_of": headline_of,
        "decision": "one submit or complete call; accepts timed apart, counted in the time",
        "p99_ratio_deepest_to_shallowest": round(ratio, 2),
        "p99_flat": ratio <= FLAT_P99_RATIO,
        "config": {"agents": args.agents, "queues": args.queues, "skills": args.skills,
                   "decisions_per_depth": args.decisions, "seed": args.seed, "gc": args.gc,
                   "python": sys.version.split()[0]},
        "depths": results,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"decisions/s ({headline_of}): {headline:,}")
        print(f"p99 at depth {results[-1]['depth']:,} / p99 at depth {results[0]['depth']:,} = "
              f"{ratio:.2f} -> {'flat' if summary['p99_flat'] else 'NOT flat'} "
              f"(flat means <= {FLAT_P99_RATIO})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
