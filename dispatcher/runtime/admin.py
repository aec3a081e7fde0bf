"""Admin commands on the store: agents, queues, calendars, tasks, schema.

Each `cmd_*` is an `async def` run under the reactor by `cli.py`; it prints for a person (an
empty list says so), or JSON with `--json`. Values like `billing=5,french=3` are parsed here
with clear errors; the rules of a change (names, known queues and calendars, nothing removed
or disabled while work is open), its audit in the agent log (actor `operator`, the OS user) and
its live apply are the service's (`dispatcher.service.configuration.Configuration`). A running
server on the same database applies these changes within a few seconds (its
`ConfigurationWatch`), without a restart.
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.queues import AgentChoice, EscalationStep, Mode, Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.configuration import Configuration, agent_config, queue_config
from dispatcher.service.intake import CALLER
from dispatcher.storage import schema

from .app import Storage

ALL_ROWS = 2**62  # `--limit 0`: a LIMIT every database takes
NOT_LIVE = "a running server applies it within a few seconds"


class WallClock:
    """The command line's clock (IReactorTime's `seconds`)."""

    @staticmethod
    def seconds() -> float:
        return time.time()


def os_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment: audit without it
        return None


def configuration(storage: Storage) -> Configuration:
    """The configuration service on this database (no router runs in the CLI's process)."""
    return Configuration(storage.store, WallClock(), phones=storage.phones, codes=storage.codes)


def operator() -> dict[str, Any]:
    """Who changes the configuration from the command line: `actor` and `user` arguments."""
    return {"actor": ev.OPERATOR, "user": os_user()}


def audit(storage: Storage, what: str, action: str, subject: str | None = None,
          **details: Any) -> Any:
    """Audit, as the operator, a change whose store keeps no log (imports, response modes)."""
    return Configuration(storage.store, WallClock()).audit(what, action, subject, **operator(),
                                                           **details)


def nothing_yet(what: str, hint: str = "") -> None:
    print(f"no {what} yet" + (f" ({hint})" if hint else ""))


def parse_levels(text: str, allow_drop: bool = False) -> dict[str, Any]:
    """'billing=5,french=3' -> {'billing': 5, 'french': 3}; with allow_drop, 'x=-' -> None."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise InvalidValue(f"expected skill=level, got {part!r}")
        value = value.strip()
        if allow_drop and value == "-":
            out[name.strip()] = None
        elif value.isdigit():
            out[name.strip()] = int(value)
        else:
            raise InvalidValue(f"{name}: level must be a whole number 0-10, got {value!r}")
    return out


def parse_channels(text: str, kind=float) -> dict[Channel, Any]:
    """'phone=1,email=3' -> {Channel.PHONE: 1, Channel.EMAIL: 3}."""
    out = {}
    for name, value in parse_pairs(text).items():
        try:
            out[Channel(name)] = kind(value)
        except ValueError:
            raise InvalidValue(f"expected phone=N or email=N, got {name}={value}") from None
    return out


def parse_pairs(text: str) -> dict[str, str]:
    pairs = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise InvalidValue(f"expected name=value, got {part!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def parse_dispositions(text: str) -> tuple[tuple[str, str], ...]:
    """'solved=Solved,callback=Call back later' -> (('solved', 'Solved'), ('callback', ...)),
    in the order given (the console lists them so); Queue checks codes and labels."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        code, sep, label = part.partition("=")
        if not sep:
            raise InvalidValue(f"expected code=Label, got {part!r}")
        out.append((code.strip(), label.strip()))
    return tuple(out)


def parse_step(text: str) -> EscalationStep:
    """'60:billing=2,french=-' -> after 60 s, billing >= 2 and french no longer required."""
    after, sep, req = text.partition(":")
    try:
        seconds = float(after)
    except ValueError:
        raise InvalidValue(f"escalation step {text!r}: expected SECONDS:skill=level,...") from None
    if not sep:
        raise InvalidValue(f"escalation step {text!r}: expected SECONDS:skill=level,...")
    return EscalationStep(seconds, parse_levels(req, allow_drop=True))


def when(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def cmd_db_upgrade(url: str) -> int:
    before = schema.current(url)
    schema.upgrade(url)
    print(f"schema {before or 'empty'} -> {schema.current(url)} (head)")
    return 0


def cmd_db_check(url: str) -> int:
    status = schema.check(url)
    if status.ok:
        print(f"schema up to date ({status.current})")
        return 0
    print(f"schema is at {status.current or 'nothing'}, head is {status.head}; "
          f"{schema.STALE_SCHEMA_HINT}", file=sys.stderr)
    return 1


def parse_channel_names(text: str) -> set[Channel]:
    """'email,phone' -> {Channel.EMAIL, Channel.PHONE}."""
    out = set()
    for name in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.add(Channel(name))
        except ValueError:
            raise InvalidValue(f"unknown channel {name!r} (known: email, phone)") from None
    return out


async def cmd_agents_add(storage: Storage, args) -> int:
    capacity = dict(Agent(args.id).capacity)
    if args.capacity:
        capacity.update(parse_channels(args.capacity, int))
    agent = Agent(  # validates levels and capacities
        id=args.id,
        name=args.name or args.id,
        skills=parse_levels(args.skills or ""),
        queues=set(filter(None, (args.queues or "").split(","))),
        capacity=capacity,
    )
    if args.channels:
        agent.channels = parse_channel_names(args.channels)
    added = await configuration(storage).put_agent(agent, **operator())
    print(f"agent {agent.id} {'added' if added else 'saved'}; {NOT_LIVE}")
    return 0


async def cmd_agents_set_skills(storage: Storage, args) -> int:
    agent = await configuration(storage).set_skills(args.id, parse_levels(args.skills),
                                                 **operator())
    skills = ",".join(f"{k}={v}" for k, v in sorted(agent.skills.items())) or "none"
    print(f"agent {agent.id} skills: {skills}; {NOT_LIVE}")
    return 0


async def cmd_agents_remove(storage: Storage, args) -> int:
    await configuration(storage).remove_agent(args.id, **operator())
    print(f"agent {args.id} removed (their console account and phone, if any, stay: "
          f"`switchboard accounts remove {args.id}`, `switchboard phones remove {args.id}`); "
          f"{NOT_LIVE}")
    return 0


async def cmd_agents_disable(storage: Storage, args) -> int:
    await configuration(storage).set_agent_disabled(args.id, True, **operator())
    print(f"agent {args.id} disabled: takes no work until `switchboard agents enable "
          f"{args.id}`; {NOT_LIVE}")
    return 0


async def cmd_agents_enable(storage: Storage, args) -> int:
    await configuration(storage).set_agent_disabled(args.id, False, **operator())
    print(f"agent {args.id} enabled; {NOT_LIVE}")
    return 0


async def cmd_agents_list(storage: Storage, args) -> int:
    rows = [agent_config(a) for a in await configuration(storage).agents()]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        nothing_yet("agents", "add one with `switchboard agents add ID --queues Q`")
    else:
        for r in rows:
            skills = ",".join(f"{k}={v}" for k, v in sorted(r["skills"].items())) or "-"
            capacity = ",".join(f"{k}={v}" for k, v in sorted(r["capacity"].items()))
            print(f"{r['id']:<16} {r['name']:<20} queues={','.join(r['queues']) or '-'} "
                  f"skills={skills} capacity={capacity}"
                  + ("  DISABLED" if r["disabled"] else ""))
    return 0


async def cmd_queues_add(storage: Storage, args) -> int:
    queue = Queue(
        name=args.name,
        requirement=parse_levels(args.requires or ""),
        steps=tuple(parse_step(s) for s in args.step or ()),
        mode=Mode(args.mode),
        agent_choice=AgentChoice(args.choice),
        priority=args.priority,
        calendar=args.calendar,
        deadline_rule=args.deadline,
        dispositions=parse_dispositions(args.dispositions or ""),
    )
    if args.sl_target:
        queue.sl_target.update(parse_channels(args.sl_target))
    if args.offer_timeout:
        queue.offer_timeout.update(parse_channels(args.offer_timeout))
    if args.wrap_up is not None:
        queue.wrap_up_seconds = args.wrap_up
    added = await configuration(storage).put_queue(queue, **operator())
    print(f"queue {queue.name} {'added' if added else 'saved'}; {NOT_LIVE}")
    return 0


async def cmd_queues_remove(storage: Storage, args) -> int:
    members = await configuration(storage).remove_queue(args.name, **operator())
    dropped = f" (dropped from {', '.join(members)})" if members else ""
    print(f"queue {args.name} removed{dropped}; {NOT_LIVE}")
    return 0


async def cmd_queues_disable(storage: Storage, args) -> int:
    await configuration(storage).set_queue_disabled(args.name, True, **operator())
    print(f"queue {args.name} disabled: takes no new tasks until `switchboard queues enable "
          f"{args.name}`; {NOT_LIVE}")
    return 0


async def cmd_queues_enable(storage: Storage, args) -> int:
    await configuration(storage).set_queue_disabled(args.name, False, **operator())
    print(f"queue {args.name} enabled; {NOT_LIVE}")
    return 0


async def cmd_queues_list(storage: Storage, args) -> int:
    rows = [queue_config(q) for q in await configuration(storage).queues()]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        nothing_yet("queues", "add one with `switchboard queues add NAME`")
    else:
        for r in rows:
            codes = ",".join(f"{d['code']}={d['label']}" for d in r["dispositions"]) or "any"
            needs = ",".join(f"{k}={v}" for k, v in sorted(r["requirement"].items())) or "-"
            print(f"{r['name']:<16} {r['mode']:<5} {r['agent_choice']:<14} "
                  f"requires={needs} steps={len(r['steps'])} priority={r['priority']} "
                  f"deadline={r['deadline_rule'] or '-'} dispositions={codes}"
                  + ("  DISABLED" if r["disabled"] else ""))
    return 0


def age(seconds: float) -> str:
    """1h05m, 3d2h, 45s: how long ago, for a person."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes}m"
    if days < 1:
        return f"{hours}h{minutes % 60:02d}m"
    return f"{days}d{hours % 24}h"


def _customer_label(customer) -> str:
    if customer is None:
        return ""
    if customer.name:
        return customer.name
    return next((i.value for i in customer.identities), "")


async def cmd_tasks_list(storage: Storage, args) -> int:
    """Newest first: request number (or task id), channel, queue, state, age, agent, customer
    and subject (or the caller's number)."""
    if args.queue:
        await configuration(storage).queue(args.queue)  # a clear error for an unknown queue
    limit = args.limit if args.limit > 0 else ALL_ROWS
    tasks = await storage.store.list_tasks(args.state, args.queue, limit, newest_first=True)
    customers = {}
    for customer_id in dict.fromkeys(t.customer_id for t in tasks if t.customer_id):
        customers[customer_id] = _customer_label(await storage.store.get_customer(customer_id))
    now = time.time()
    rows = [{"id": t.id, "request": t.attributes.get("request"), "channel": t.channel,
             "queue": t.queue, "state": t.state, "subject": t.attributes.get("subject"),
             "caller": t.attributes.get(CALLER), "customer": t.customer_id,
             "customer_name": customers.get(t.customer_id or "", ""),
             "created_at": when(t.created_at), "age_seconds": round(now - t.created_at),
             "deadline": when(t.deadline), "agent": t.agent_id, "priority": t.priority}
            for t in tasks]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        which = " ".join(f"{k}={v}" for k, v in (("state", args.state), ("queue", args.queue))
                         if v)
        nothing_yet("tasks" + (f" with {which}" if which else ""))
        return 0
    print(f"{'REQUEST':<14} {'CHANNEL':<7} {'QUEUE':<12} {'STATE':<9} {'AGE':>6}  "
          f"{'AGENT':<10} {'CUSTOMER':<22} SUBJECT / CALLER")
    for r in rows:
        about = r["subject"] or r["caller"] or ""
        print(f"{(r['request'] or r['id'][:12]):<14} {r['channel']:<7} {r['queue']:<12} "
              f"{r['state']:<9} {age(r['age_seconds']):>6}  {(r['agent'] or '-'):<10} "
              f"{r['customer_name'][:22]:<22} {about[:60]}")
    if len(rows) == args.limit:
        print(f"(the newest {args.limit}; --limit 0 lists them all)")
    return 0


async def cmd_tasks_show(storage: Storage, args) -> int:
    """The task, its customer, its conversation and its whole trail, oldest event first; by task
    id or by request number (SB-000123)."""
    from .task_views import show_task

    task = await storage.store.get_task(args.id)
    if task is None and not args.json:
        text = await show_task(storage.store, args.id)
        if text is not None:
            print(text, end="")
            return 0
    if task is None:
        raise InvalidValue(f"no such task: {args.id}")
    customer = await storage.store.get_customer(task.customer_id) if task.customer_id else None
    events = await storage.store.task_events(args.id)
    if args.json:
        print(json.dumps({
            "task": {"id": task.id, "channel": task.channel, "queue": task.queue,
                     "state": task.state, "priority": task.priority, "agent": task.agent_id,
                     "created_at": when(task.created_at), "deadline": when(task.deadline)},
            "customer": None if customer is None else {
                "id": customer.id, "name": customer.name,
                "identities": [[i.kind, i.value] for i in customer.identities]},
            "trail": [{"at": when(e.at), "kind": e.kind, "actor": e.actor, "agent": e.agent_id,
                       "data": e.data} for e in events],
        }, indent=2, default=str))
        return 0
    from .task_views import show_task

    if customer is not None:
        ids = ", ".join(f"{i.kind}:{i.value}" for i in customer.identities) or "anonymous"
        print(f"Customer {customer.id}  {customer.name or '(no name)'}  ({ids})")
    print(await show_task(storage.store, task.id), end="")
    return 0


def parse_hours(text: str) -> dict[str, list[list[str]]]:
    """'mon-fri=09:00-12:30,13:30-18:00;sat=09:00-12:00' -> {'mon': [['09:00','12:30'], ...]}."""
    from dispatcher.domain.deadlines import WEEKDAY_NAMES

    hours: dict[str, list[list[str]]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        days, sep, spans = part.partition("=")
        if not sep:
            raise InvalidValue(f"opening hours {part!r}: expected DAYS=HH:MM-HH:MM,...")
        first, _, last = days.strip().lower().partition("-")
        try:
            lo = WEEKDAY_NAMES.index(first)
            hi = WEEKDAY_NAMES.index(last) if last else lo
        except ValueError:
            raise InvalidValue(f"opening hours {part!r}: days are mon..sun") from None
        intervals = []
        for span in filter(None, (x.strip() for x in spans.split(","))):
            start, dash, end = span.partition("-")
            if not dash:
                raise InvalidValue(f"opening hours {span!r}: expected HH:MM-HH:MM")
            intervals.append([start.strip(), end.strip()])
        for i in range(lo, hi + 1):
            hours[WEEKDAY_NAMES[i]] = intervals
    return hours


async def cmd_calendars_add(storage: Storage, args) -> int:
    from dispatcher.service.ports import Calendar

    holidays = tuple(filter(None, (h.strip() for h in args.holidays.split(","))))
    calendar = Calendar(args.name, args.timezone, parse_hours(args.hours), holidays)
    await configuration(storage).put_calendar(calendar, **operator())
    print(f"calendar {calendar.name} saved; {NOT_LIVE}")
    return 0


async def cmd_calendars_list(storage: Storage, args) -> int:
    calendars = await configuration(storage).calendars()
    rows = [{"name": c.name, "timezone": c.timezone, "hours": c.hours,
             "holidays": list(c.holidays)} for c in calendars]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        nothing_yet("calendars", "add one with `switchboard calendars add NAME --timezone TZ "
                                 "--hours ...`")
    else:
        for r in rows:
            hours = "; ".join(f"{d}={','.join('-'.join(i) for i in v)}"
                              for d, v in r["hours"].items())
            print(f"{r['name']:<12} {r['timezone']:<18} {hours}  holidays={len(r['holidays'])}")
    return 0
