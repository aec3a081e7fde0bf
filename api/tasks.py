"""`/api/v1/tasks`: list (filters, cursor paging), show (with conversation and trail), create
through Intake, cancel, reprioritise. Who may see or change what: dispatcher.service.tasks."""

from __future__ import annotations

from typing import Any

from dispatcher.service.access import roles_for
from dispatcher.service.tasks import DEFAULT_PAGE, MAX_PAGE, Caller, TaskFilter, summary_of

from . import schemas as s
from .routes import Call, Param, Reply, Route
from .services import Services, plain

READ, CHANGE = roles_for("tasks.read"), roles_for("tasks.change")
ID = Param("id", "path", s.ID, "the task's id", required=True)


def _caller(call: Call) -> Caller:
    return Caller(call.sub, call.role)


async def list_tasks(services: Services, call: Call) -> Any:
    p = call.params
    where = TaskFilter(p.get("state"), p.get("queue"), p.get("channel"), p.get("agent"),
                       p.get("customer"))
    page = await services.need_tasks().list(_caller(call), where,
                                             p.get("limit", DEFAULT_PAGE), p.get("cursor"))
    return {"items": plain(list(page.items)), "next": page.next}


async def show_task(services: Services, call: Call) -> Any:
    detail = await services.need_tasks().show(_caller(call), call.params["id"])
    conversation = None
    if detail.conversation is not None:
        conversation = {"entries": plain(detail.conversation.entries),
                        "more": detail.conversation.more}
    return {"task": plain(detail.task), "trail": plain(detail.trail),
            "conversation": conversation}


async def create_task(services: Services, call: Call) -> Any:
    b = call.body
    customer = b.get("customer") or {}
    attributes = dict(b.get("attributes") or {})
    for key in ("subject", "body"):
        if key in b:
            attributes[key] = b[key]
    task = await services.need_tasks().create(
        _caller(call), b["channel"], b["queue"], identity_kind=customer.get("kind"),
        identity=customer.get("value"), customer_name=customer.get("name", ""),
        priority=b.get("priority"), attributes=attributes, source=b.get("source"),
        skills=b.get("skills"))
    return Reply(plain(summary_of(task)), 201)


async def cancel_task(services: Services, call: Call) -> Any:
    reason = (call.body or {}).get("reason", "")
    return plain(await services.need_tasks().cancel(_caller(call), call.params["id"], reason))


async def reprioritise(services: Services, call: Call) -> Any:
    return plain(await services.need_tasks().set_priority(
        _caller(call), call.params["id"], call.body["priority"]))


ROUTES = [
    Route("GET", "/tasks", "List tasks, newest first", READ, list_tasks, s.ref("TaskPage"),
          params=(
              Param("state", "query", s.STATE),
              Param("queue", "query", {"type": "string", "maxLength": 200}),
              Param("channel", "query", s.CHANNEL),
              Param("agent", "query", {"type": "string", "maxLength": 200},
                    "the agent holding it"),
              Param("customer", "query", {"type": "string", "maxLength": 200},
                    "the customer's id"),
              Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                       "default": DEFAULT_PAGE}),
              Param("cursor", "query", {"type": "string", "maxLength": 400},
                    "`next` of the previous page"),
          ), tag="tasks",
          description="Agents see only the tasks they hold or are offered."),
    Route("GET", "/tasks/{id}", "A task with its conversation and trail", READ, show_task,
          s.ref("TaskDetail"), params=(ID,), tag="tasks"),
    Route("POST", "/tasks", "Create a task for another system (through Intake)", CHANGE,
          create_task, s.ref("Task"), body=s.ref("NewTask"), status=201, tag="tasks",
          description="Answered 201 once the task is stored; it is routed at once."),
    Route("POST", "/tasks/{id}/cancel", "Cancel an open task", CHANGE, cancel_task,
          s.ref("Task"), params=(ID,), body=s.CANCEL, tag="tasks"),
    Route("POST", "/tasks/{id}/priority", "Change an open task's priority", CHANGE,
          reprioritise, s.ref("Task"), params=(ID,), body=s.NEW_PRIORITY, tag="tasks"),
]
