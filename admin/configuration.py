"""`switchboard agents | queues | calendars ...`: the contact centre's configuration from the
command line.

Each `cmd_*` is an `async def` given the command's context (`EdgeCommandContext`) and the
parsed arguments; it prints for a person (an empty list says so), or JSON with `--json`.
Values like `billing=5,french=3` are parsed here (parse.py) with clear errors; the rules of a
change (names, known queues and calendars, nothing removed or disabled while work is open), its
audit in the agent log (actor `operator`, the OS user) and its live apply are the service's
(`dispatcher.service.configuration.Configuration`). A running server on the same database
applies these changes within a few seconds (its `ConfigurationWatch`), without a restart.
"""

from __future__ import annotations

import json
from typing import Any

from dispatcher.domain.agents import DEFAULT_CAPACITY, Agent, interruptions
from dispatcher.domain.queues import (
    DEFAULT_OFFER_TIMEOUT,
    DEFAULT_SL_TARGET,
    DEFAULT_WRAP_UP_SECONDS,
    AgentChoice,
    Mode,
    Queue,
)
from dispatcher.service.configuration import agent_config, queue_config
from dispatcher.service.edges import EdgeCommandContext
from dispatcher.service.ports import Calendar

from .parse import (
    JSON_HELP,
    LIVE_HELP,
    NOT_LIVE,
    nothing_yet,
    operator,
    parse_attributes,
    parse_channel_names,
    parse_channels,
    parse_dispositions,
    parse_hours,
    parse_levels,
    parse_step,
)


def _pairs(by_channel: Any) -> str:
    """{PHONE: 20.0, EMAIL: 60.0} -> 'phone=20,email=60' (defaults shown in the help)."""
    return ",".join(f"{getattr(c, 'value', c)}={v:g}" for c, v in by_channel.items())


def add_commands(sub: Any) -> None:
    """`agents` and `queues`."""
    agents = sub.add_parser("agents", help="the agents: skills, queues, capacity"
                            ).add_subparsers(dest="action", required=True, metavar="ACTION")
    a = agents.add_parser("add", help="add or update an agent" + LIVE_HELP)
    a.add_argument("id", help="the agent's id (also their console sign-in id)")
    a.add_argument("--name", help="the name shown to supervisors and customers (default: the id)")
    a.add_argument("--skills", help="skill=level,... (levels 0-10)")
    a.add_argument("--attribute", action="append", metavar="NAME=VALUE",
                   help="what requirement expressions read beside skills, e.g. "
                        "languages=fr,en or tier=senior or remote=true; repeatable")
    a.add_argument("--queues", help="queue,queue,... they serve (each must exist)")
    a.add_argument("--capacity", help="tasks at a time per channel, e.g. phone=1,email=3 "
                                      f"(default: {_pairs(DEFAULT_CAPACITY)})")
    a.add_argument("--channels", help="email,phone: the channels they handle (default: both)")
    a.add_argument("--interruptions", metavar="HELD:CHANNEL,...;...",
                   help="their own blend: what may still be offered while they hold a task of "
                        "each channel, e.g. 'email:email; phone:' (no calls on top of e-mail); "
                        "default: the centre's [routing] interruptions")
    a = agents.add_parser("set-skills", help="replace an agent's skills" + LIVE_HELP)
    a.add_argument("id", help="the agent's id")
    a.add_argument("skills", help="skill=level,... (levels 0-10)")
    a = agents.add_parser("list", help="every agent with skills, queues and capacity")
    a.add_argument("--json", action="store_true", help=JSON_HELP)
    a = agents.add_parser("remove", help="delete an agent; refused while they hold work"
                          + LIVE_HELP)
    a.add_argument("id", help="the agent's id")
    a = agents.add_parser("disable", help="keep an agent but give them no work; refused while "
                          "they hold work" + LIVE_HELP)
    a.add_argument("id", help="the agent's id")
    a = agents.add_parser("enable", help="let a disabled agent work again" + LIVE_HELP)
    a.add_argument("id", help="the agent's id")

    queues = sub.add_parser("queues", help="the queues: requirements, escalation, deadlines"
                            ).add_subparsers(dest="action", required=True, metavar="ACTION")
    q = queues.add_parser("add", help="add or update a queue" + LIVE_HELP)
    q.add_argument("name", help="letters, digits, _ . - (it appears in addresses and settings)")
    q.add_argument("--requires", help="skill=level,... an agent needs")
    q.add_argument("--expression", default="",
                   help='a requirement expression, e.g. \'support >= 5 AND languages HAS '
                        'task.language AND tier != "trainee"\' (docs/routing.md)')
    q.add_argument("--step", action="append",
                   help="escalation: SECONDS:skill=level,...[:EXPRESSION] ('-' drops a skill; "
                        "an expression replaces the queue's from then on); repeatable")
    q.add_argument("--mode", choices=["push", "pull"], default="push",
                   help="push: offered to agents; pull: agents pick from a list")
    q.add_argument("--choice", choices=["longest_idle", "highest_skill"], default="longest_idle",
                   help="which available agent is offered a task")
    q.add_argument("--priority", type=int, default=0,
                   help="added to its tasks' own priority when they are ordered")
    q.add_argument("--reserve", type=int, default=0,
                   help="agents kept free of e-mail for its calls while they are at risk "
                        "(docs/routing.md, 'The blend'); default 0")
    q.add_argument("--sl-target", help="service-level target per channel, seconds "
                                       f"(default: {_pairs(DEFAULT_SL_TARGET)})")
    q.add_argument("--offer-timeout", help="seconds an offer waits for its agent "
                                           f"(default: {_pairs(DEFAULT_OFFER_TIMEOUT)})")
    q.add_argument("--wrap-up", type=float, help="seconds of wrap-up after a call "
                                                 f"(default: {DEFAULT_WRAP_UP_SECONDS:g})")
    q.add_argument("--calendar", help="business calendar name (see `calendars add`)")
    q.add_argument("--deadline", help="e-mail deadline: 'sliding 24h' or 'scheduled 12:00 +1'")
    q.add_argument("--dispositions",
                   help="the codes agents close tasks with: 'solved=Solved,callback=Call back "
                        "later' (none: any code)")
    q = queues.add_parser("list", help="every queue with its rules")
    q.add_argument("--json", action="store_true", help=JSON_HELP)
    q = queues.add_parser("remove", help="delete a queue (agents are dropped from it); refused "
                          "while tasks wait in it or are held" + LIVE_HELP)
    q.add_argument("name", help="the queue's name")
    q = queues.add_parser("disable", help="keep a queue but take no new tasks in it; refused "
                          "while tasks wait in it or are held" + LIVE_HELP)
    q.add_argument("name", help="the queue's name")
    q = queues.add_parser("enable", help="let a disabled queue take tasks again" + LIVE_HELP)
    q.add_argument("name", help="the queue's name")


def add_calendar_commands(sub: Any) -> None:
    """`calendars`."""
    cal = sub.add_parser("calendars", help="business calendars for deadlines"
                         ).add_subparsers(dest="action", required=True, metavar="ACTION")
    c = cal.add_parser("add", help="add or update a business calendar" + LIVE_HELP)
    c.add_argument("name", help="the calendar's name (queues name it with --calendar)")
    c.add_argument("--timezone", required=True, help="IANA zone, e.g. Europe/Paris")
    c.add_argument("--hours", required=True,
                   help="'mon-fri=09:00-12:30,13:30-18:00;sat=09:00-12:00' (24:00 allowed)")
    c.add_argument("--holidays", default="", help="ISO dates: 2026-12-25,2027-01-01")
    c = cal.add_parser("list", help="every calendar")
    c.add_argument("--json", action="store_true", help=JSON_HELP)


async def cmd_agents_add(context: EdgeCommandContext, args) -> int:
    capacity = dict(Agent(args.id).capacity)
    if args.capacity:
        capacity.update(parse_channels(args.capacity, int))
    agent = Agent(  # validates levels and capacities
        id=args.id,
        name=args.name or args.id,
        skills=parse_levels(args.skills or ""),
        attributes=parse_attributes(args.attribute or []),
        queues=set(filter(None, (args.queues or "").split(","))),
        capacity=capacity,
    )
    if args.channels:
        agent.channels = parse_channel_names(args.channels)
    if args.interruptions:
        agent.interruptions = interruptions(args.interruptions, "--interruptions")
    added = await context.configuration.put_agent(agent, **operator())
    print(f"agent {agent.id} {'added' if added else 'saved'}; {NOT_LIVE}")
    return 0


async def cmd_agents_set_skills(context: EdgeCommandContext, args) -> int:
    agent = await context.configuration.set_skills(args.id, parse_levels(args.skills),
                                                 **operator())
    skills = ",".join(f"{k}={v}" for k, v in sorted(agent.skills.items())) or "none"
    print(f"agent {agent.id} skills: {skills}; {NOT_LIVE}")
    return 0


async def cmd_agents_remove(context: EdgeCommandContext, args) -> int:
    await context.configuration.remove_agent(args.id, **operator())
    print(f"agent {args.id} removed (their console account and phone, if any, stay: "
          f"`switchboard accounts remove {args.id}`, `switchboard phones remove {args.id}`); "
          f"{NOT_LIVE}")
    return 0


async def cmd_agents_disable(context: EdgeCommandContext, args) -> int:
    await context.configuration.set_agent_disabled(args.id, True, **operator())
    print(f"agent {args.id} disabled: takes no work until `switchboard agents enable "
          f"{args.id}`; {NOT_LIVE}")
    return 0


async def cmd_agents_enable(context: EdgeCommandContext, args) -> int:
    await context.configuration.set_agent_disabled(args.id, False, **operator())
    print(f"agent {args.id} enabled; {NOT_LIVE}")
    return 0


async def cmd_agents_list(context: EdgeCommandContext, args) -> int:
    rows = [agent_config(a) for a in await context.configuration.agents()]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        nothing_yet("agents", "add one with `switchboard agents add ID --queues Q`")
    else:
        for r in rows:
            skills = ",".join(f"{k}={v}" for k, v in sorted(r["skills"].items())) or "-"
            capacity = ",".join(f"{k}={v}" for k, v in sorted(r["capacity"].items()))
            attrs = "".join(f" {k}={json.dumps(v)}" for k, v in sorted(r["attributes"].items()))
            print(f"{r['id']:<16} {r['name']:<20} queues={','.join(r['queues']) or '-'} "
                  f"skills={skills}{attrs} capacity={capacity}"
                  + ("  DISABLED" if r["disabled"] else ""))
    return 0


async def cmd_queues_add(context: EdgeCommandContext, args) -> int:
    queue = Queue(
        name=args.name,
        requirement=parse_levels(args.requires or ""),
        expression=args.expression,
        steps=tuple(parse_step(s) for s in args.step or ()),
        mode=Mode(args.mode),
        agent_choice=AgentChoice(args.choice),
        priority=args.priority,
        reserve=args.reserve,
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
    added = await context.configuration.put_queue(queue, **operator())
    print(f"queue {queue.name} {'added' if added else 'saved'}; {NOT_LIVE}")
    return 0


async def cmd_queues_remove(context: EdgeCommandContext, args) -> int:
    members = await context.configuration.remove_queue(args.name, **operator())
    dropped = f" (dropped from {', '.join(members)})" if members else ""
    print(f"queue {args.name} removed{dropped}; {NOT_LIVE}")
    return 0


async def cmd_queues_disable(context: EdgeCommandContext, args) -> int:
    await context.configuration.set_queue_disabled(args.name, True, **operator())
    print(f"queue {args.name} disabled: takes no new tasks until `switchboard queues enable "
          f"{args.name}`; {NOT_LIVE}")
    return 0


async def cmd_queues_enable(context: EdgeCommandContext, args) -> int:
    await context.configuration.set_queue_disabled(args.name, False, **operator())
    print(f"queue {args.name} enabled; {NOT_LIVE}")
    return 0


async def cmd_queues_list(context: EdgeCommandContext, args) -> int:
    rows = [queue_config(q) for q in await context.configuration.queues()]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        nothing_yet("queues", "add one with `switchboard queues add NAME`")
    else:
        for r in rows:
            codes = ",".join(f"{d['code']}={d['label']}" for d in r["dispositions"]) or "any"
            needs = ",".join(f"{k}={v}" for k, v in sorted(r["requirement"].items())) or "-"
            where = f" expression={r['expression']!r}" if r["expression"] else ""
            print(f"{r['name']:<16} {r['mode']:<5} {r['agent_choice']:<14} "
                  f"requires={needs}{where} steps={len(r['steps'])} priority={r['priority']} "
                  f"deadline={r['deadline_rule'] or '-'} dispositions={codes}"
                  + ("  DISABLED" if r["disabled"] else ""))
    return 0


async def cmd_calendars_add(context: EdgeCommandContext, args) -> int:
    holidays = tuple(filter(None, (h.strip() for h in args.holidays.split(","))))
    calendar = Calendar(args.name, args.timezone, parse_hours(args.hours), holidays)
    await context.configuration.put_calendar(calendar, **operator())
    print(f"calendar {calendar.name} saved; {NOT_LIVE}")
    return 0


async def cmd_calendars_list(context: EdgeCommandContext, args) -> int:
    calendars = await context.configuration.calendars()
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


COMMANDS = {
    ("agents", "add"): cmd_agents_add,
    ("agents", "list"): cmd_agents_list,
    ("agents", "set-skills"): cmd_agents_set_skills,
    ("agents", "remove"): cmd_agents_remove,
    ("agents", "disable"): cmd_agents_disable,
    ("agents", "enable"): cmd_agents_enable,
    ("queues", "add"): cmd_queues_add,
    ("queues", "list"): cmd_queues_list,
    ("queues", "remove"): cmd_queues_remove,
    ("queues", "disable"): cmd_queues_disable,
    ("queues", "enable"): cmd_queues_enable,
    ("calendars", "add"): cmd_calendars_add,
    ("calendars", "list"): cmd_calendars_list,
}
