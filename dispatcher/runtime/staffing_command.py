"""The command line of scenarios: `switchboard simulate --scenario FILE` and `switchboard
staffing FILE` (wired in cli.py). Reads the scenario, shows progress on stderr for runs long
enough to wait for (dispatcher.progress), prints text or one JSON object on stdout, and writes
the HTML report (staffing_report.py) when asked. A bad scenario raises InvalidValue, which
cli.py prints as one `error: ...` line (exit 2).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dispatcher.domain.errors import InvalidValue
from dispatcher.progress import PROGRESS_AFTER_SECONDS, ProgressLine

from . import scenario as scenario_mod
from .centre_figures import CentreResult, simulate_scenario
from .staffing import EMAIL_TARGET, Staffing, staffing


def _progress(quiet: bool) -> tuple[Callable[[int, int], None], Callable[[int], None]]:
    """A progress callback (shown only after PROGRESS_AFTER_SECONDS) and its finish."""
    line = None if quiet else ProgressLine(sys.stderr, label="simulate",
                                           unit="simulated minutes", verb="played")
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        if line is not None and time.monotonic() - started >= PROGRESS_AFTER_SECONDS:
            line(done, total)

    def finish(total: int) -> None:
        if line is not None and line.shown:
            line.finish(total)

    return progress, finish


def simulate_command(args) -> int:
    scenario = scenario_mod.load(args.scenario)
    progress, finish = _progress(args.quiet)
    result = simulate_scenario(scenario, seed=args.seed, progress=progress)
    finish(int(result.simulated_seconds // 60))
    if args.json:
        print(json.dumps(_plain(result.as_dict())))
        return 0
    print(f"{result.scenario}: {result.agents} agents, {result.days} day(s) simulated, "
          f"occupancy {result.occupancy:.2f}, {result.overtime_hours:.1f} agent-hours of work "
          f"finished on breaks or after shifts")
    print_figures(result)
    return 0


def print_figures(result: CentreResult) -> None:
    rows = [("", "queue", "channel", "offered", "answered", "abandoned", "SL", "ASA s",
             "in deadline", "mean wait h", "max wait h")]
    for t in [*({**d, "day": f"day {d['day']}"} for d in result.per_day),
              *({**d, "day": "all"} for d in result.totals)]:
        phone = t["channel"] == "phone"
        rows.append((t["day"], t["queue"], t["channel"], str(t["offered"]), str(t["answered"]),
                     str(t["abandoned"]) if phone else "-",
                     _f(t.get("service_level"), ".3f"), _f(t.get("asa_seconds"), ".1f"),
                     _f(t.get("within_deadline"), ".3f"), _f(t.get("mean_wait_hours"), ".1f"),
                     _f(t.get("max_wait_hours"), ".1f")))
    _table(rows)


def staffing_command(args) -> int:
    if args.sl is not None and not 0 < args.sl <= 1:
        raise InvalidValue(f"--sl must be a share in (0, 1], got {args.sl:g}")
    if args.within is not None and not (math.isfinite(args.within) and args.within >= 0):
        raise InvalidValue(f"--within must be 0 seconds or more, got {args.within:g}")
    email_share = EMAIL_TARGET if args.email_share is None else args.email_share
    if not 0 < email_share <= 1:
        raise InvalidValue(f"--email-share must be a share in (0, 1], got {email_share:g}")
    scenario = scenario_mod.load(args.scenario)
    progress, finish = _progress(args.quiet)
    answer = staffing(scenario, args.sl, args.within, email_share, args.seed, progress)
    finish(int(answer.checked.simulated_seconds // 60))
    if args.html:
        from .staffing_report import write_report

        write_report(Path(args.html), scenario, answer)
    if args.json:
        print(json.dumps(_plain(answer.as_dict())))
        return 0
    print_staffing(scenario.name, answer)
    if args.html:
        print(f"report: {args.html}")
    return 0


def print_staffing(name: str, answer: Staffing) -> None:
    d = answer.as_dict()
    plan = answer.plan
    print(f"staffing for {name!r}, per 15-minute interval (intervals needing nobody left out)")
    rows = [("interval", "agents", "for calls", "call erlangs", "for e-mail")]
    for row in d["intervals"]:
        rows.append((row["starts"], str(row["agents"]), str(row["call_agents"]),
                     f"{row['call_erlangs']:.1f}", f"{row['email_agents']:.1f}"))
    _table(rows)
    print(f"{plan.agent_hours:.1f} agent-hours a day, at most {d['peak_agents']} agents at once")
    checked = answer.checked
    print(f"checked on the simulator: the plan played for {checked.days} day(s) by "
          f"{checked.agents} blended agents, occupancy {checked.occupancy:.2f}")
    rows = [("queue", "channel", "figure", "target", "simulated", "")]
    for v in answer.verdicts():
        rows.append((v["queue"], v["channel"], v["figure"], f"{v['target']:.3f}",
                     _f(v["simulated"], ".3f"), "met" if v["met"] else "NOT MET"))
    _table(rows)
    print_figures(checked)


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())


def _plain(value):
    """JSON values: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value

