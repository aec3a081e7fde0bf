"""Benchmark of the router (dispatcher.domain.routing), in process: decisions per second and the
cost of one decision as the queue depth grows. A benchmark, not a test: it prints figures and
never fails on time.

Model: N agents (default 5,000) in Q queues (default 200). Each queue requires 1-2 of ~30 skills
at levels 1-6 (intake copies the queue's requirement into each task, as the service does); a
quarter of the queues have an escalation step (after 60 s, one level less). Each agent has 3-8
skills, qualifies for the 3-6 queues they belong to (`--membership`), and holds 1 call or 3
e-mails (default capacity and interruption matrix: a call may come on top of e-mails).

For each depth D (default 1k, 10k, 100k waiting tasks) a fresh router is preloaded until D tasks
wait (every agent busy as far as their queues' work allows), then a steady flow runs: while
depth >= D a random held task is completed (the agent takes the best waiting task: a decision),
otherwise a task arrives (queued or offered: a decision); every offer is accepted at once. The
depth therefore stays at D (+- 1). Each router call is timed with time.perf_counter_ns.

A *decision* is a `submit` or a `complete`. `accept` calls (the agent may be served again when
they still have room) are timed and reported apart. `decisions_per_second` counts decisions over
the time spent in every router call of the run, accepts included (the conservative figure);
`decision_calls_per_second` over the time of the decision calls alone.

CPU time. After the timed pass, the same flow goes on for as many decisions again with
time.process_time_ns read around each router call instead (the clock's own cost, measured at
start, is taken off each call): `cpu_us_per_decision` is the router's CPU time per decision,
accepts included, and `cpu_decisions_per_second` its inverse. Wall time counts what other
processes take from us on a shared machine; CPU time mostly does not (caches shared with them
still slow us down), so compare figures of one run, and read the load printed with them.

Requirement expressions (`--rule`). `plain` (the default) is the model above. `expression`
and `skills` add a language to it: every agent speaks 1-3 of LANGUAGES (English more often)
and every task is in one; a task may only go to an agent who speaks its language. `expression`
writes each queue's whole rule as a requirement expression (`s03 >= 4 AND languages HAS
task.language`, its step one level lower) over agents' attributes and tasks' attributes;
`skills` writes the same rule as skill levels only (a skill `lang_fr` at level 1 per language
spoken, required by each task in its language), the way a centre had to before expressions. The
two route alike, bucket for bucket, so their ratio is the cost of the expressions alone. `--rule
vs` runs both, alternating, in one command and prints expression / skills. The languages use a
random generator of their own: the queues, agents and flow are those of `plain`.

Repeats and a peer. Each (depth, repeat) runs in a fresh process; figures are medians over
`--repeats`. `--peer DIR` runs the same model, seed and flow against the router of another tree
(e.g. the last commit: `git archive HEAD | tar -x -C /tmp/before`), alternating with this tree's
runs, and prints this tree's figures over the peer's (above 1: this tree is faster).

    .venv/bin/python bench/routing.py                      # full run, ~5 min
    .venv/bin/python bench/routing.py --agents 500 --queues 40 --depths 1000,10000 \\
        --decisions 20000 --repeats 1                      # a quick one
    .venv/bin/python bench/routing.py --depths 10000 --peer /tmp/before   # before / after
    .venv/bin/python bench/routing.py --membership 40-55 --depths 0 --decisions 20000
        # bench/durable.py's regime: agents in many queues, nobody waits (each task is
        # offered on arrival), so every accept and complete re-lists the agent in ~100 buckets
    .venv/bin/python bench/routing.py --rule vs --depths 1000,10000   # expressions' cost
    .venv/bin/python bench/routing.py --json               # one JSON object on stdout
    .venv/bin/python bench/routing.py --profile 10000      # cProfile of the hot path
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _tree(argv: list[str]) -> Path:
    """The tree whose router is measured: `--tree DIR` (a run for a peer), or this one."""
    for i, arg in enumerate(argv):
        if arg == "--tree" and i + 1 < len(argv):
            return Path(argv[i + 1]).resolve()
        if arg.startswith("--tree="):
            return Path(arg.split("=", 1)[1]).resolve()
    return HERE


sys.path.insert(0, str(_tree(sys.argv)))

# After the choice of the tree (E402): a peer's run imports the peer's router.
from dispatcher.domain.agents import Agent, Presence  # noqa: E402
from dispatcher.domain.queues import AgentChoice, EscalationStep, Queue  # noqa: E402
from dispatcher.domain.routing import Outcome, Router  # noqa: E402
from dispatcher.domain.tasks import Channel, Task  # noqa: E402

LANGUAGES = ("en", "en", "en", "fr", "de", "nl", "es")  # drawn from: English 3 times as often

DEFAULT_AGENTS = 5_000
DEFAULT_QUEUES = 200
DEFAULT_SKILLS = 30
DEFAULT_DEPTHS = (1_000, 10_000, 100_000)
DEFAULT_DECISIONS = 100_000
DEFAULT_REPEATS = 3
DEFAULT_MEMBERSHIP = "3-6"
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


def _queue(name: str, req: dict[str, int], steps: tuple, choice: AgentChoice, rule: str
           ) -> Queue:
    """The queue of `plain` and `skills` (levels), or of `expression` (the same rule written
    as an expression, with the language)."""
    if rule != "expression":
        return Queue(name, requirement=req, steps=steps, agent_choice=choice)

    def written(levels: dict) -> str:
        return " AND ".join([f"{s} >= {lvl}" for s, lvl in sorted(levels.items())]
                            + ["languages HAS task.language"])
    return Queue(name, expression=written(req), agent_choice=choice, steps=tuple(
        EscalationStep(st.after_seconds, {}, written(st.requirement)) for st in steps))


def build(args: argparse.Namespace, rng: random.Random) -> Router:
    """A router with the queues and the agents, everybody available, nothing waiting."""
    router = Router()
    speech = random.Random(args.seed + 1)  # the languages: their own draws (module docstring)
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
        router.put_queue(_queue(q.name, req, steps, choice, args.rule), T0)
    for i in range(args.agents):
        mine = rng.sample(queues, min(len(queues), rng.randint(*args.membership)))
        have: dict[str, int] = {}
        for q in mine:
            for s, lvl in q.requirement.items():
                have[s] = max(have.get(s, 0), rng.randint(lvl, 10))
        while len(have) < rng.randint(3, 8):
            have.setdefault(rng.choice(skills), rng.randint(0, 10))
        spoken = sorted(set(speech.sample(LANGUAGES, speech.randint(1, 3))))
        attributes = {"languages": spoken} if args.rule == "expression" else {}
        if args.rule == "skills":
            have = {**have, **{f"lang_{lang}": 1 for lang in spoken}}
        agent = Agent(id=f"a{i:05d}", skills=have, queues={q.name for q in mine},
                      attributes=attributes,
                      status=Presence.AVAILABLE, idle_since=T0 - rng.random() * 600)
        router.put_agent(agent, T0)
    return router


class Flow:
    """Arrivals and completions around one router, keeping the count of waiting tasks."""

    def __init__(self, router: Router, rng: random.Random, rule: str = "plain",
                 seed: int = 1) -> None:
        self.router = router
        self.rng = rng
        self.rule = rule
        self.speech = random.Random(seed + 2)
        self.clock = time.perf_counter_ns  # what each router call is timed with
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
        language = self.speech.choice(LANGUAGES)
        skills = dict(q.requirement)
        if self.rule == "skills":
            skills[f"lang_{language}"] = 1
        return Task(id=f"t{self.seq}", channel=channel, queue=q.name, customer_id=None,
                    created_at=self.now, base_skills=skills,
                    priority=rng.choice((0, 0, 0, 0, 0, 0, 1, 2)), deadline=deadline,
                    attributes={"language": language} if self.rule == "expression" else {})

    def accept_all(self, out: Outcome, t: Timings | None) -> None:
        """Accept every offer of `out` at once, and those the accepts lead to."""
        pending = list(out.offers)
        router, clock = self.router, self.clock
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
        clock = self.clock
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
        clock = self.clock
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


def clock_cost(clock=time.process_time_ns, n: int = 20_001) -> int:
    """The median reading of `clock` right after itself: what timing one call adds to it."""
    gaps = []
    for _ in range(n):
        t0 = clock()
        gaps.append(clock() - t0)
    return int(statistics.median(gaps))


def run_depth(args: argparse.Namespace, depth: int) -> dict:
    rng = random.Random(args.seed)
    t_build = time.perf_counter()
    router = build(args, rng)
    flow = Flow(router, rng, args.rule, args.seed)
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
    # The CPU pass: the same flow goes on, each call timed with the process's CPU clock.
    flow.clock = time.process_time_ns
    cost = clock_cost()
    c = Timings()
    cpu0 = time.process_time_ns()
    while len(c.decisions) < args.decisions:
        flow.step(depth, c)
    loop_cpu_ns = time.process_time_ns() - cpu0
    gc.enable()
    gc.unfreeze()
    in_router_ns = sum(t.decisions) + sum(t.accepts)
    n = len(t.decisions)
    cpu_ns = sum(c.decisions) + sum(c.accepts) - cost * (len(c.decisions) + len(c.accepts))
    cpu_ns = max(cpu_ns, 1)
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
        "cpu_us_per_decision": round(cpu_ns / len(c.decisions) / 1000, 3),
        "cpu_decisions_per_second": round(len(c.decisions) / (cpu_ns / 1e9)),
        "loop_cpu_us_per_decision": round(loop_cpu_ns / len(c.decisions) / 1000, 3),
        "clock_cost_ns": cost,
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
    flow = Flow(build(args, rng), rng, args.rule, args.seed)
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
    p.add_argument("--membership", default=DEFAULT_MEMBERSHIP, metavar="LOW-HIGH",
                   help="how many queues each agent belongs to (default %(default)s; an agent "
                        "in many queues is in many buckets: e.g. 40-55, as in bench/durable.py)")
    p.add_argument("--depths", default=",".join(str(d) for d in DEFAULT_DEPTHS),
                   help="comma-separated queue depths (waiting tasks)")
    p.add_argument("--decisions", type=int, default=DEFAULT_DECISIONS,
                   help="decisions measured per depth (and as many again for the CPU pass)")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                   help="runs per depth (and per tree), each in a fresh process; medians shown")
    p.add_argument("--peer", metavar="DIR",
                   help="another tree (a checkout) whose router runs the same flow, "
                        "alternating with this one; ratios printed")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--gc", choices=("on", "freeze", "off"), default="on",
                   help="garbage collector while measuring: on (default), freeze (gc.freeze() "
                        "after the preload, as a server could after its restore), off")
    p.add_argument("--rule", choices=("plain", "expression", "skills", "vs"), default="plain",
                   help="plain: the model without languages; expression / skills: with "
                        "languages, written as requirement expressions / as skill levels; "
                        "vs: both in one command, with their ratio (module docstring)")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    p.add_argument("--profile", type=int, metavar="DEPTH",
                   help="print a cProfile of --decisions steps at DEPTH instead")
    p.add_argument("--tree", help=argparse.SUPPRESS)  # read before the imports: see _tree
    p.add_argument("--one", type=int, metavar="DEPTH", help=argparse.SUPPRESS)  # one run, JSON
    args = p.parse_args(argv)
    try:
        low, high = (int(x) for x in args.membership.split("-"))
    except ValueError:
        p.error(f"--membership {args.membership}: LOW-HIGH, e.g. 3-6")
    if not 1 <= low <= high:
        p.error(f"--membership {args.membership}: 1 <= LOW <= HIGH")
    args.membership = (low, high)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.peer and args.rule == "vs":
        p.error("--peer and --rule vs: one comparison at a time")
    if args.peer and not (Path(args.peer) / "dispatcher" / "domain" / "routing.py").is_file():
        p.error(f"--peer {args.peer}: no dispatcher/domain/routing.py there")
    return args


def run_one(args: argparse.Namespace, depth: int, tree: Path, rule: str) -> dict:
    """One run at `depth` in a fresh process, with the router of `tree`, under `rule`."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(depth), "--rule", rule,
           "--tree", str(tree), "--agents", str(args.agents), "--queues", str(args.queues),
           "--skills", str(args.skills), "--membership", "-".join(map(str, args.membership)),
           "--decisions", str(args.decisions),
           "--seed", str(args.seed), "--gc", args.gc]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the run of {tree} at depth {depth} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def medians(runs: list[dict]) -> dict:
    """The median of each figure over the repeats of one depth."""
    out: dict = {"depth": runs[0]["depth"], "repeats": len(runs)}
    for key, value in runs[0].items():
        if key != "depth" and isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = statistics.median(r[key] for r in runs)
    return out


def line(name: str, res: dict) -> str:
    return (f"  {name:<5} {res['decisions_per_second']:>9,.0f} decisions/s in the router "
            f"(decision calls alone {res['decision_calls_per_second']:,.0f}/s); CPU "
            f"{res['cpu_us_per_decision']:.2f} us/decision = "
            f"{res['cpu_decisions_per_second']:,.0f}/s; median {res['median_ns'] / 1000:.1f} us, "
            f"p99 {res['p99_ns'] / 1000:.1f} us, p99.9 {res['p999_ns'] / 1000:.1f} us; submit "
            f"{res['submit_median_ns'] / 1000:.1f}, complete {res['complete_median_ns'] / 1000:.1f},"
            f" accept {res['accept_median_ns'] / 1000:.1f} us (medians) "
            f"[{res['submits']:,.0f} submits, {res['completes']:,.0f} completes, "
            f"{res['accepts']:,.0f} accepts; waiting at end {res['waiting_at_end']:,.0f}; "
            f"setup {res['setup_seconds']} s]")


def ratios(this: dict, peer: dict) -> dict:
    """This tree over the peer (above 1: this tree is faster)."""
    return {"decisions_per_second": round(this["decisions_per_second"]
                                          / peer["decisions_per_second"], 2),
            "cpu_decisions_per_second": round(this["cpu_decisions_per_second"]
                                              / peer["cpu_decisions_per_second"], 2),
            "median_ns": round(peer["median_ns"] / this["median_ns"], 2),
            "p99_ns": round(peer["p99_ns"] / this["p99_ns"], 2)}


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - the report, step by step
    args = parse(argv)
    if args.profile:
        print(profile(args, args.profile))
        return 0
    if args.one is not None:
        res = run_depth(args, args.one)
        res["router"] = sys.modules[Router.__module__].__file__
        print(json.dumps(res))
        return 0
    # Here, not at the top: a peer's run (above) imports from the peer's tree, which may have
    # no bench/machine.py.
    from bench import machine

    depths = [int(d) for d in args.depths.split(",") if d]
    # (name, tree, rule) of each variant measured; the first is "this", a second its peer.
    trees = [("this", HERE, args.rule)]
    if args.peer:
        trees.append(("peer", Path(args.peer).resolve(), args.rule))
    if args.rule == "vs":
        trees = [("this", HERE, "expression"), ("peer", HERE, "skills")]
    runs: dict[str, dict[int, list[dict]]] = {name: {d: [] for d in depths}
                                              for name, _, _ in trees}
    before = machine.now()
    if not args.json:
        print(f"routing: {args.agents:,} agents, {args.queues} queues, depths "
              f"{', '.join(f'{d:,}' for d in depths)}, {args.decisions:,} decisions per run, "
              f"{args.repeats} repeat(s), rule {args.rule}"
              f"{', peer ' + str(trees[1][1]) if args.peer else ''}; "
              f"{machine.said(before)}", flush=True)
    for r in range(args.repeats):
        for depth in depths:
            for name, tree, rule in trees if r % 2 == 0 else trees[::-1]:  # alternate
                core = machine.core_ms()
                res = run_one(args, depth, tree, rule)
                res["core_ms_before"] = core  # its median joins the depth's figures
                runs[name][depth].append(res)
                if not args.json:
                    print(f"depth {depth:>7,} run {r + 1}:{line(rule[:5], res)} core {core} ms "
                          "before", flush=True)
    after = machine.now()
    results = [medians(runs["this"][d]) for d in depths]
    compared = len(trees) > 1
    label = {"this": "expr", "peer": "skill"} if args.rule == "vs" else {"this": "this",
                                                                          "peer": "peer"}
    peer = [medians(runs["peer"][d]) for d in depths] if compared else []
    ratio = results[-1]["p99_ns"] / results[0]["p99_ns"] if len(results) > 1 else 1.0
    by_depth = {r["depth"]: r for r in results}
    headline_depth = 10_000 if 10_000 in by_depth else None
    if headline_depth is not None:
        head = by_depth[headline_depth]
        headline_of = "depth 10000"
    else:
        head = {k: statistics.fmean(r[k] for r in results)
                for k in ("decisions_per_second", "cpu_us_per_decision",
                          "cpu_decisions_per_second")}
        headline_of = "mean over depths"
    summary: dict = {
        "decisions_per_second": round(head["decisions_per_second"]),
        "cpu_us_per_decision": round(head["cpu_us_per_decision"], 3),
        "cpu_decisions_per_second": round(head["cpu_decisions_per_second"]),
        "decisions_per_second_of": headline_of,
        "decision": "one submit or complete call; accepts timed apart, counted in the time",
        "figures": "medians over the repeats, each in a fresh process",
        "p99_ratio_deepest_to_shallowest": round(ratio, 2),
        "p99_flat": ratio <= FLAT_P99_RATIO,
        "machine": {"before": before, "after": after, "cpus": os.cpu_count()},
        "config": {"agents": args.agents, "queues": args.queues, "skills": args.skills,
                   "membership": list(args.membership),
                   "decisions_per_depth": args.decisions, "repeats": args.repeats,
                   "seed": args.seed, "gc": args.gc, "python": sys.version.split()[0]},
        "depths": results,
        "runs": {name: {str(d): v for d, v in by.items()} for name, by in runs.items()},
    }
    if compared:
        summary["peer"] = {"tree": str(trees[1][1]), "rule": trees[1][2], "depths": peer,
                           "ratios": [{"depth": t["depth"], **ratios(t, p)}
                                      for t, p in zip(results, peer, strict=True)]}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"medians over {args.repeats} repeat(s); after: {machine.said(after)} "
          f"({os.cpu_count()} CPUs):")
    for i, res in enumerate(results):
        print(f"depth {res['depth']:>7,}:{line(label['this'], res)}")
        if compared:
            p, q = peer[i], ratios(res, peer[i])
            print(f"{'':>14}{line(label['peer'], p)}")
            print(f"{'':>16}{label['this']} / {label['peer']}: "
                  f"{q['decisions_per_second']:.2f}x decisions/s, "
                  f"{q['cpu_decisions_per_second']:.2f}x per CPU second, median "
                  f"{q['median_ns']:.2f}x, p99 {q['p99_ns']:.2f}x faster")
    print(f"decisions/s ({headline_of}): {summary['decisions_per_second']:,} in the router; "
          f"{summary['cpu_decisions_per_second']:,} per CPU second "
          f"({summary['cpu_us_per_decision']:.2f} us CPU per decision)")
    print(f"p99 at depth {results[-1]['depth']:,} / p99 at depth {results[0]['depth']:,} = "
          f"{ratio:.2f} -> {'flat' if summary['p99_flat'] else 'NOT flat'} "
          f"(flat means <= {FLAT_P99_RATIO})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
