"""The command line of `switchboard replay` (wired in cli.py): which period, which changes,
and the side-by-side output.

Reads the period from the configuration's database without a server and without writing
(storage/day_log.py), replays it (replay.py) with the stored configuration changed by
`--changes FILE` (queues and agents in the configuration API's form: `queue_from_config`,
`agent_from_config`, replacing those of the same name or id, or added; an agent may say
`"like": "ID"` to be present when that agent was), `--add-agents N --like ID` and
`--interruptions TEXT` (the centre's matrix; default the configuration's `[routing]
interruptions`). Prints text, or one JSON object with `--json`; progress on stderr for runs
long enough to wait for. Bad arguments raise InvalidValue: cli.py prints one `error: ...`
line and exits 2.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from dispatcher.domain.agents import interruptions
from dispatcher.domain.errors import InvalidValue
from dispatcher.progress import PROGRESS_AFTER_SECONDS, ProgressLine
from dispatcher.service.configuration import agent_from_config, queue_from_config

from .replay import ReplayResult, Setup, replay, with_copies
from .replay_day import day_from_events

DAY = 86400.0
CHANGE_KEYS = {"queues", "agents"}


def add_parser(sub) -> None:
    p = sub.add_parser("replay", help="replay a recorded day through the real router with "
                                      "another configuration, side by side with the record")
    p.add_argument("--day", metavar="YYYY-MM-DD", help="the UTC day to replay (default: "
                                                       "yesterday, UTC)")
    p.add_argument("--from", dest="start", metavar="TIME", help="start of the period instead "
                   "of --day: epoch seconds or ISO 8601 (UTC unless it says)")
    p.add_argument("--to", dest="end", metavar="TIME", help="end of the period (excluded)")
    p.add_argument("--changes", metavar="FILE", help="JSON or TOML: queues = [...], agents = "
                   "[...] in the configuration API's form, replacing or adding (an agent may "
                   "say like = \"ID\": present when that agent was)")
    p.add_argument("--add-agents", type=int, default=0, metavar="N",
                   help="N more agents like --like")
    p.add_argument("--like", metavar="AGENT_ID", help="the agent --add-agents copies (skills, "
                   "queues, channels; present when that agent was)")
    p.add_argument("--interruptions", metavar="TEXT", help="the centre's blend, e.g. "
                   "'email:email,phone; phone:' (default: [routing] interruptions)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def parse_time(value: str, where: str) -> float:
    """Epoch seconds, or an ISO 8601 date or time (UTC unless it names an offset)."""
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
        raise InvalidValue(f"{where}: {value!r} is not a time")
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValue(f"{where}: {value!r} is not epoch seconds or an ISO 8601 time") \
            from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def period(args, now: float) -> tuple[float, float]:
    if args.day is not None and (args.start is not None or args.end is not None):
        raise InvalidValue("--day or --from/--to, not both")
    if (args.start is None) != (args.end is None):
        raise InvalidValue("--from and --to go together")
    if args.start is not None:
        start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
        if end <= start:
            raise InvalidValue("--to must be after --from")
        return start, end
    if args.day is None:
        today = dt.datetime.fromtimestamp(now, dt.UTC).date()
        day = today - dt.timedelta(days=1)
    else:
        try:
            day = dt.date.fromisoformat(args.day)
        except ValueError:
            raise InvalidValue(f"--day: {args.day!r} is not a date (YYYY-MM-DD)") from None
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    return start, start + DAY


def read_changes(path: str) -> dict[str, Any]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidValue(f"--changes: cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if file.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InvalidValue(f"--changes: {path} is not valid "
                           f"{'TOML' if file.suffix.lower() == '.toml' else 'JSON'}: {exc}") \
            from None
    if not isinstance(data, dict) or set(data) - CHANGE_KEYS:
        raise InvalidValue(f"--changes: {path}: an object with queues and/or agents, got "
                           f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    return data


def build_setup(args, recorded, default_interruptions: str) -> Setup:
    """The stored configuration, changed by the arguments (see the module docstring)."""
    queues = {q.name: q for q in recorded.queues}
    agents = {a.id: a for a in recorded.agents}
    like: dict[str, str] = {}
    if args.changes is not None:
        changes = read_changes(args.changes)
        for i, data in enumerate(changes.get("queues", [])):
            if not isinstance(data, dict):
                raise InvalidValue(f"--changes: queues[{i}] is not an object")
            queue = queue_from_config(data)
            queues[queue.name] = queue
        for i, data in enumerate(changes.get("agents", [])):
            if not isinstance(data, dict):
                raise InvalidValue(f"--changes: agents[{i}] is not an object")
            data = dict(data)
            present_like = data.pop("like", None)
            agent = agent_from_config(data)
            agents[agent.id] = agent
            if present_like is not None:
                if present_like not in agents:
                    raise InvalidValue(f"--changes: agent {agent.id}: like: no agent "
                                       f"{present_like!r}")
                like[agent.id] = present_like
    if args.add_agents < 0:
        raise InvalidValue("--add-agents must be 0 or more")
    if args.add_agents and args.like is None:
        raise InvalidValue("--add-agents needs --like AGENT_ID")
    if args.like is not None and args.add_agents:
        if args.like not in agents:
            raise InvalidValue(f"--like: no agent {args.like!r}")
        copies, more = with_copies(list(agents.values()), args.like, args.add_agents)
        agents.update((a.id, a) for a in copies)
        like.update(more)
    matrix = interruptions(args.interruptions if args.interruptions is not None
                           else default_interruptions, "--interruptions")
    return Setup(sorted(queues.values(), key=lambda q: q.name),
                 sorted(agents.values(), key=lambda a: a.id), list(recorded.calendars),
                 matrix, like)


def replay_command(args, config, url: str) -> int:
    from dispatcher.storage.day_log import read_period

    start, end = period(args, time.time())
    recorded = read_period(url, start, end)
    setup = build_setup(args, recorded, config.routing.interruptions)
    day = day_from_events(start, end, recorded.task_events, recorded.agent_events,
                          recorded.attributes)
    line = None if args.quiet else ProgressLine(sys.stderr, label="replay",
                                                unit="simulated minutes", verb="played")
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        if line is not None and time.monotonic() - started >= PROGRESS_AFTER_SECONDS:
            line(done, total)

    events = sorted([*recorded.task_events, *recorded.agent_events], key=lambda e: e.at)
    result = replay(day, setup, events, recorded.open_before, progress)
    if line is not None and line.shown:
        line.finish(int((end - start) // 60))
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print_result(result)
    return 0


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "share":
        return f"{value:.3f}"
    if kind == "seconds":
        return f"{value:.1f}"
    if kind == "diff_share":
        return f"{value:+.3f}"
    if kind == "diff_seconds":
        return f"{value:+.1f}"
    if kind == "diff":
        return f"{value:+d}" if isinstance(value, int) else f"{value:+g}"
    return str(value)


ROWS = (("offered", "count"), ("answered", "count"), ("abandoned", "count"),
        ("service_level", "share"), ("mean_wait_seconds", "seconds"),
        ("max_wait_seconds", "seconds"), ("answered_within_deadline", "count"),
        ("within_deadline", "share"))


def print_result(result: ReplayResult) -> None:
    print(f"replay of {_iso(result.start)} - {_iso(result.end)}")
    print("service level = calls answered within the queue's target / (answered + "
          "abandoned); waits: arrival to the first assignment; e-mails: answered = completed, "
          "within deadline = completed by the deadline / (completed + overdue at the end)")
    for q in result.queues():
        target = "no target" if q["target_seconds"] is None else f"target {q['target_seconds']:g} s"
        print(f"\n{q['queue']} / {q['channel']} ({target})")
        print(f"  {'':26}{'recorded':>10}{'replayed':>10}{'difference':>12}")
        for key, kind in ROWS:
            if key not in q["replayed"] and key not in q["recorded"]:
                continue
            diff_kind = "diff" if kind == "count" else f"diff_{kind}"
            print(f"  {key.replace('_', ' '):26}{_cell(q['recorded'].get(key), kind):>10}"
                  f"{_cell(q['replayed'].get(key), kind):>10}"
                  f"{_cell(q['difference'].get(key), diff_kind):>12}")
    print(f"\n  {'agent':26}{'handled':>16}{'occupancy':>20}")
    print(f"  {'':26}{'rec':>8}{'rep':>8}{'rec':>10}{'rep':>10}")
    for a in result.agents():
        rec, rep = a["recorded"] or {}, a["replayed"] or {}
        print(f"  {a['agent']:26}{_cell(rec.get('handled'), 'count'):>8}"
              f"{_cell(rep.get('handled'), 'count'):>8}"
              f"{_cell(rec.get('occupancy'), 'share'):>10}"
              f"{_cell(rep.get('occupancy'), 'share'):>10}")
    notes = _notes(result)
    if notes:
        print()
        for n in notes:
            print(f"note: {n}")


def _notes(result: ReplayResult) -> list[str]:
    """What the reader should know about the comparison (see replay.py's docstring)."""
    notes = []
    share = result.same_agent_share()
    if share is not None:
        notes.append(f"tasks answered by the same agent as recorded: {share:.1%}")
    if result.agents_added:
        notes.append(f"agents added: {', '.join(result.agents_added)}")
    if result.estimated:
        notes.append(f"{result.estimated} task(s) never answered in the record were answered "
                     f"now and given the median handle time of their queue and channel")
    for what, n in result.not_played.items():
        notes.append(f"{n} task(s) were {what} in the record: not replayed")
    for what, n in result.refused.items():
        notes.append(f"{n} arrival(s) refused by the replayed configuration ({what})")
    if result.open_before:
        notes.append(f"{result.open_before} task(s) open at the start (arrived before) are not "
                     f"replayed")
    return notes
