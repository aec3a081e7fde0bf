"""`switchboard tasks list | show`: the work, from the command line.

`list` prints the newest tasks first (request number, channel, queue, state, age, agent,
customer, subject or caller); `show` one task with its customer, conversation and trail, by
task id or request number (SB-000123). Both read through `dispatcher.service.records.Records`.
"""

from __future__ import annotations

import json
from typing import Any

from dispatcher.domain.errors import InvalidValue
from dispatcher.service.edges import EdgeCommandContext
from dispatcher.service.intake import CALLER

from .parse import ALL_ROWS, JSON_HELP, age, nothing_yet, when
from .task_views import show_task

TASK_STATES = ("queued", "offered", "assigned", "wrap_up", "completed", "cancelled", "abandoned")


def add_commands(sub: Any) -> None:
    """`tasks`."""
    tasks = sub.add_parser("tasks", help="the work: e-mails and calls"
                           ).add_subparsers(dest="action", required=True, metavar="ACTION")
    t = tasks.add_parser("list", help="tasks, newest first: request number, state, age, agent, "
                                      "customer, subject or caller")
    t.add_argument("--state", choices=TASK_STATES, help="only tasks in this state")
    t.add_argument("--queue", help="only this queue's tasks")
    t.add_argument("--limit", type=int, default=100, help="the newest N (0: all)")
    t.add_argument("--json", action="store_true", help=JSON_HELP)
    t = tasks.add_parser("show", help="a task, its customer, its conversation and its full "
                                      "trail of events")
    t.add_argument("id", help="a task id or a request number (SB-000123)")
    t.add_argument("--json", action="store_true", help=JSON_HELP + " (by task id)")


def _customer_label(customer) -> str:
    if customer is None:
        return ""
    if customer.name:
        return customer.name
    return next((i.value for i in customer.identities), "")


async def cmd_tasks_list(context: EdgeCommandContext, args) -> int:
    """Newest first: request number (or task id), channel, queue, state, age, agent, customer
    and subject (or the caller's number)."""
    if args.queue:
        await context.configuration.queue(args.queue)  # a clear error for an unknown queue
    limit = args.limit if args.limit > 0 else ALL_ROWS
    tasks = await context.records.list_tasks(args.state, args.queue, limit)
    customers = {}
    for customer_id in dict.fromkeys(t.customer_id for t in tasks if t.customer_id):
        customers[customer_id] = _customer_label(await context.records.get_customer(customer_id))
    now = context.reactor.seconds()
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


async def cmd_tasks_show(context: EdgeCommandContext, args) -> int:
    """The task, its customer, its conversation and its whole trail, oldest event first; by task
    id or by request number (SB-000123)."""
    task = await context.records.get_task(args.id)
    if task is None and not args.json:
        text = await show_task(context.records, args.id)
        if text is not None:
            print(text, end="")
            return 0
    if task is None:
        raise InvalidValue(f"no such task: {args.id}")
    customer = await context.records.get_customer(task.customer_id) if task.customer_id else None
    events = await context.records.task_events(args.id)
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
    if customer is not None:
        ids = ", ".join(f"{i.kind}:{i.value}" for i in customer.identities) or "anonymous"
        print(f"Customer {customer.id}  {customer.name or '(no name)'}  ({ids})")
    print(await show_task(context.records, task.id), end="")
    return 0


COMMANDS = {
    ("tasks", "list"): cmd_tasks_list,
    ("tasks", "show"): cmd_tasks_show,
}
