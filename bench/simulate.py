"""Benchmark of the scenario simulator (dispatcher/runtime/centre.py): the wall time to simulate
one day of a 200-agent blended centre on the real router. A benchmark, not a test: it prints
figures and never fails on time. Target (the staffing issue): <= 10 s on the 2-core machine.

The centre: two queues (support, sales; sales needs a skill only a third of the agents hold),
200 blended agents (one call or one e-mail at a time: a call interrupts an e-mail) in three
shifts (07:00-15:00, 10:00-18:00, 13:00-21:00) with two breaks each, staggered by group; calls
07:00-21:00 with a morning and an afternoon peak (about 12,000 a day; lognormal handling, mean
280 s; 25 s of wrap-up; exponential patience, mean 120 s); e-mails round the clock (about
4,000 a day; lognormal, mean 420 s; due 4 business hours after arrival, 08:00-20:00 on
weekdays). The same seed each repeat, so every repeat does the same work; each repeat runs in
a fresh process (no warm caches from the one before), and the figure is the median.

    .venv/bin/python bench/simulate.py                 # 3 repeats
    .venv/bin/python bench/simulate.py --agents 400 --repeats 1
    .venv/bin/python bench/simulate.py --json          # one JSON object on stdout
    .venv/bin/python bench/simulate.py --profile       # cProfile of one run, top 25
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dispatcher.runtime import scenario
from dispatcher.runtime.centre_figures import simulate_scenario

TARGET_SECONDS = 10.0
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def _profile(peaks: list[tuple[float, float, float]], start: int, end: int) -> list[float]:
    """A day's shape: 1 plus Gaussian bumps (centre hour, width hours, height), intervals
    from `start` to `end` (15-minute indexes)."""
    out = []
    for i in range(start, end):
        hour = i / 4 + 0.125
        out.append(1 + sum(h * math.exp(-((hour - c) / w) ** 2) for c, w, h in peaks))
    return out


def centre(agents: int = 200, seed: int = 1) -> scenario.Scenario:
    """The 200-agent blended centre of the module docstring (scaled to `agents`)."""
    per = agents / 200
    calls = _profile([(10.5, 1.6, 1.2), (15.0, 1.8, 0.9)], 28, 84)  # 07:00-21:00
    scale = 330 * per / max(calls)  # the peak interval: 330 calls for 200 agents
    groups = []
    third = agents // 3
    for g, (shift, breaks) in enumerate([
            (("07:00", "15:00"), (("09:30", "09:45"), ("12:00", "12:30"))),
            (("10:00", "18:00"), (("12:30", "12:45"), ("14:30", "15:00"))),
            (("13:00", "21:00"), (("15:30", "15:45"), ("18:00", "18:30")))]):
        count = agents - 2 * third if g == 2 else third
        sales = count // 3
        common = {"shift": list(shift), "breaks": [list(b) for b in breaks]}
        groups.append({"name": f"shift{g + 1}-sales", "count": sales,
                       "skills": {"support": 1, "sales": 1}, **common})
        groups.append({"name": f"shift{g + 1}", "count": count - sales,
                       "skills": {"support": 1}, "queues": ["support"], **common})
    return scenario.parse({
        "scenario": {"name": f"{agents}-agent blended centre", "date": "2026-03-03",
                     "timezone": "Europe/Paris", "seed": seed},
        "calendars": {"office": {"hours": {d: [["08:00", "20:00"]] for d in WEEKDAYS}}},
        "queues": [
            {"name": "support", "skills": {"support": 1}, "sl_seconds": {"phone": 20},
             "deadline": "sliding 4h", "calendar": "office", "wrap_up_seconds": 25},
            {"name": "sales", "skills": {"sales": 1}, "sl_seconds": {"phone": 30},
             "deadline": "sliding 4h", "calendar": "office", "wrap_up_seconds": 25}],
        "agents": groups,
        "traffic": [
            {"queue": "support", "channel": "phone", "start": "07:00",
             "per_interval": [round(c * scale * 0.75, 2) for c in calls], "patience": 120,
             "handle": {"distribution": "lognormal", "mean": 280, "sd": 200}},
            {"queue": "sales", "channel": "phone", "start": "07:00",
             "per_interval": [round(c * scale * 0.25, 2) for c in calls], "patience": 120,
             "handle": {"distribution": "lognormal", "mean": 280, "sd": 200}},
            {"queue": "support", "channel": "email",
             "per_interval": [round(42 * per, 2)] * 96,
             "handle": {"distribution": "lognormal", "mean": 420, "sd": 300}}]})


def one_run(agents: int) -> dict:
    s = centre(agents)
    wall, cpu = time.perf_counter(), time.process_time()
    result = simulate_scenario(s)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tasks = sum(t["offered"] for t in result.totals)
    return {"wall_seconds": wall, "cpu_seconds": cpu, "tasks": tasks,
            "totals": result.totals, "occupancy": result.occupancy}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--profile", action="store_true", help="cProfile one run (slower)")
    args = p.parse_args(argv)
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(one_run, args.agents)
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())
        return 0
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs = []
    for _ in range(args.repeats):  # one fresh process each, one after the other
        with ProcessPoolExecutor(max_workers=1) as pool:
            runs.append(pool.submit(one_run, args.agents).result())
    figures = {
        "agents": args.agents,
        "tasks": runs[0]["tasks"],
        "wall_seconds_median": statistics.median(r["wall_seconds"] for r in runs),
        "wall_seconds": [round(r["wall_seconds"], 2) for r in runs],
        "cpu_seconds_median": statistics.median(r["cpu_seconds"] for r in runs),
        "target_seconds": TARGET_SECONDS,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "simulated": {"occupancy": runs[0]["occupancy"], "totals": runs[0]["totals"]},
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    mark = "meets" if figures["wall_seconds_median"] <= TARGET_SECONDS else "misses"
    print(f"a simulated day of a {args.agents}-agent blended centre ({figures['tasks']:,} "
          f"tasks): {figures['wall_seconds_median']:.2f} s wall (median of {args.repeats}: "
          f"{figures['wall_seconds']}), {figures['cpu_seconds_median']:.2f} s CPU; {mark} the "
          f"{TARGET_SECONDS:g} s target")
    print(f"load average before {load_before}, after {figures['load_after']} "
          f"({figures['cpus']} CPUs)")
    for t in runs[0]["totals"]:
        sl = t.get("service_level", t.get("within_deadline"))
        print(f"  {t['queue']:8} {t['channel']:6} offered {t['offered']:6,}  "
              f"{'SL' if t['channel'] == 'phone' else 'in deadline'} "
              f"{'-' if sl is None else format(sl, '.3f')}")
    print(f"  occupancy {runs[0]['occupancy']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
