"""`/api/v1/queues`, `/api/v1/agents`, `/api/v1/calendars`: read, put, remove, disable and
enable through the configuration service (dispatcher.service.configuration), which checks every
rule once, stores with an audit event and applies the change to the running router. Bodies
are the JSON the GET answers (`queue_config`, `agent_config`, `calendar_config`); the name or
id in the path wins over (and must equal) the body's."""

from __future__ import annotations

from typing import Any

from dispatcher.service.access import roles_for
from dispatcher.service.configuration import (
    agent_config,
    agent_from_config,
    calendar_config,
    calendar_from_config,
    queue_config,
    queue_from_config,
)

from . import schemas as s
from .problems import Problem
from .routes import Call, Param, Reply, Route
from .services import Services

READ, CHANGE = roles_for("configuration.read"), roles_for("configuration.change")
NAME = Param("name", "path", s.ID, "the queue's name", required=True)
AGENT_ID = Param("id", "path", s.ID, "the agent's id", required=True)
CAL = Param("name", "path", s.ID, "the calendar's name", required=True)


def _named(body: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    if key in body and body[key] != value:
        raise Problem(400, "invalid_body", f"/{key}: differs from the path ({value!r})")
    return {**body, key: value}


async def list_queues(services: Services, call: Call) -> Any:
    return [queue_config(q) for q in await services.need_configuration().queues()]


async def show_queue(services: Services, call: Call) -> Any:
    return queue_config(await services.need_configuration().queue(call.params["name"]))


async def put_queue(services: Services, call: Call) -> Any:
    queue = queue_from_config(_named(call.body, "name", call.params["name"]))
    created = await services.need_configuration().put_queue(queue, call.actor)
    return Reply(queue_config(queue), 201 if created else 200)


async def remove_queue(services: Services, call: Call) -> Any:
    await services.need_configuration().remove_queue(call.params["name"], call.actor)
    return {"removed": call.params["name"]}


def _queue_disabled(disabled: bool) -> Any:
    async def handler(services: Services, call: Call) -> Any:
        queue = await services.need_configuration().set_queue_disabled(
            call.params["name"], disabled, call.actor)
        return queue_config(queue)
    return handler


async def list_agents(services: Services, call: Call) -> Any:
    return [agent_config(a) for a in await services.need_configuration().agents()]


async def show_agent(services: Services, call: Call) -> Any:
    return agent_config(await services.need_configuration().agent(call.params["id"]))


async def put_agent(services: Services, call: Call) -> Any:
    agent = agent_from_config(_named(call.body, "id", call.params["id"]))
    created = await services.need_configuration().put_agent(agent, call.actor)
    return Reply(agent_config(agent), 201 if created else 200)


async def set_skills(services: Services, call: Call) -> Any:
    agent = await services.need_configuration().set_skills(
        call.params["id"], call.body["skills"], call.actor)
    return agent_config(agent)


async def remove_agent(services: Services, call: Call) -> Any:
    await services.need_configuration().remove_agent(call.params["id"], call.actor)
    return {"removed": call.params["id"]}


def _agent_disabled(disabled: bool) -> Any:
    async def handler(services: Services, call: Call) -> Any:
        agent = await services.need_configuration().set_agent_disabled(
            call.params["id"], disabled, call.actor)
        return agent_config(agent)
    return handler


async def list_calendars(services: Services, call: Call) -> Any:
    return [calendar_config(c) for c in await services.need_configuration().calendars()]


async def put_calendar(services: Services, call: Call) -> Any:
    calendar = calendar_from_config(_named(call.body, "name", call.params["name"]))
    await services.need_configuration().put_calendar(calendar, call.actor)
    return calendar_config(calendar)


REMOVED = s.obj({"removed": {"type": "string"}}, ("removed",))

ROUTES = [
    Route("GET", "/queues", "Every queue's configuration", READ, list_queues,
          s.array(s.ref("Queue")), tag="queues"),
    Route("GET", "/queues/{name}", "One queue's configuration", READ, show_queue,
          s.ref("Queue"), params=(NAME,), tag="queues"),
    Route("PUT", "/queues/{name}", "Create or replace a queue (every setting)", CHANGE,
          put_queue, s.ref("Queue"), params=(NAME,), body=s.CONFIG_IN, also=(201,),
          tag="queues",
          description="201 when it is new, 200 when it replaced one; applied live."),
    Route("DELETE", "/queues/{name}", "Remove a queue (nothing may wait or be held in it)",
          CHANGE, remove_queue, REMOVED, params=(NAME,), tag="queues"),
    Route("POST", "/queues/{name}/disable", "Stop a queue taking new tasks", CHANGE,
          _queue_disabled(True), s.ref("Queue"), params=(NAME,), tag="queues"),
    Route("POST", "/queues/{name}/enable", "Let a queue take new tasks again", CHANGE,
          _queue_disabled(False), s.ref("Queue"), params=(NAME,), tag="queues"),
    Route("GET", "/agents", "Every agent's configuration", READ, list_agents,
          s.array(s.ref("Agent")), tag="agents"),
    Route("GET", "/agents/{id}", "One agent's configuration", READ, show_agent,
          s.ref("Agent"), params=(AGENT_ID,), tag="agents"),
    Route("PUT", "/agents/{id}", "Create or replace an agent", CHANGE, put_agent,
          s.ref("Agent"), params=(AGENT_ID,), body=s.CONFIG_IN, also=(201,), tag="agents"),
    Route("PUT", "/agents/{id}/skills", "Set an agent's skills and levels", CHANGE, set_skills,
          s.ref("Agent"), params=(AGENT_ID,), body=s.SKILLS_IN, tag="agents"),
    Route("DELETE", "/agents/{id}", "Remove an agent (holding no work)", CHANGE, remove_agent,
          REMOVED, params=(AGENT_ID,), tag="agents"),
    Route("POST", "/agents/{id}/disable", "Stop an agent taking work", CHANGE,
          _agent_disabled(True), s.ref("Agent"), params=(AGENT_ID,), tag="agents"),
    Route("POST", "/agents/{id}/enable", "Let an agent take work again", CHANGE,
          _agent_disabled(False), s.ref("Agent"), params=(AGENT_ID,), tag="agents"),
    Route("GET", "/calendars", "Business calendars", READ, list_calendars,
          s.array(s.ref("Calendar")), tag="calendars"),
    Route("PUT", "/calendars/{name}", "Create or replace a business calendar", CHANGE,
          put_calendar, s.ref("Calendar"), params=(CAL,), body=s.CONFIG_IN, tag="calendars"),
]
