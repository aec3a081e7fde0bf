"""The JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of what the API takes and gives.

Request bodies are closed (`additionalProperties: false`: an unknown field is a 400); response
objects are open (a later version may add fields)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

ID = {"type": "string", "minLength": 1, "maxLength": 200}
TEXT = {"type": "string", "maxLength": 10_000}
TIME = {"type": "number", "description": "seconds since the epoch (UTC)"}
MAYBE_TIME = {"type": ["number", "null"]}
MAYBE_TEXT = {"type": ["string", "null"]}
PRIORITY = {"type": "integer", "minimum": 0, "maximum": 100}
CHANNEL = {"type": "string", "enum": ["email", "phone"],
           "description": "The channel (dispatcher Channel). Work from other systems (a web "
                          "chat, a CRM case) uses one of these and names its system in "
                          "`source`; there is no other channel value."}
STATE = {"type": "string", "enum": ["queued", "offered", "assigned", "wrap_up", "completed",
                                    "cancelled", "abandoned"]}
OBJECT = {"type": "object"}


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), closed: bool = False,
        description: str = "") -> Schema:
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    if description:
        out["description"] = description
    return out


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


PROBLEM = obj({
    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
    "detail": {"type": "string"}, "instance": {"type": "string"},
}, ("type", "title", "status", "detail", "instance"),
    description="RFC 9457 problem details")

TASK = obj({
    "id": ID, "channel": CHANNEL, "queue": {"type": "string"}, "state": STATE,
    "customer_id": MAYBE_TEXT, "created_at": TIME, "deadline": MAYBE_TIME,
    "agent_id": MAYBE_TEXT, "priority": {"type": "integer"}, "attributes": OBJECT,
}, ("id", "channel", "queue", "state", "created_at", "priority", "attributes"))

EVENT = obj({"id": {"type": "integer"}, "kind": {"type": "string"}, "at": TIME,
             "task_id": MAYBE_TEXT, "agent_id": MAYBE_TEXT, "actor": {"type": "string"},
             "data": OBJECT}, ("id", "kind", "at", "actor", "data"))

ENTRY = obj({"id": {"type": "string"}, "at": TIME, "kind": {"type": "string"},
             "internal": {"type": "boolean"}, "text": {"type": "string"}},
            ("id", "at", "kind"))

TASK_DETAIL = obj({
    "task": ref("Task"), "trail": array(ref("Event")),
    "conversation": {"oneOf": [
        obj({"entries": array(ref("Entry")), "more": {"type": "boolean"}},
            ("entries", "more")),
        {"type": "null"}],
        "description": "null when the caller may not read it (supervisors and the agent "
                       "holding the task may)"},
}, ("task", "trail", "conversation"))

TASK_PAGE = obj({"items": array(ref("Task")), "next": MAYBE_TEXT}, ("items", "next"))

NEW_TASK = obj({
    "channel": CHANNEL,
    "queue": {"type": "string", "minLength": 1, "maxLength": 200},
    "customer": obj({
        "kind": {"type": "string", "enum": ["email", "phone"],
                 "description": "default: the channel's kind"},
        "value": {"type": "string", "minLength": 1, "maxLength": 320},
        "name": {"type": "string", "maxLength": 200},
    }, ("value",), closed=True),
    "subject": {"type": "string", "maxLength": 1000},
    "body": {"type": "string", "maxLength": 100_000},
    "attributes": {"type": "object", "maxProperties": 50},
    "priority": PRIORITY,
    "skills": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0,
                                                          "maximum": 10}},
    "source": {"type": "string", "minLength": 1, "maxLength": 40,
               "description": "the system the task comes from, e.g. \"crm\" or \"chat\"; "
                              "kept in the task's attributes as `source`"},
}, ("channel", "queue"), closed=True,
    description="A task from another system, through Intake (routed, and stored with its routing before the answer).")

CANCEL = obj({"reason": {"type": "string", "maxLength": 200}}, closed=True)
NEW_PRIORITY = obj({"priority": PRIORITY}, ("priority",), closed=True)

IDENTITY = obj({"kind": {"type": "string"}, "value": {"type": "string"}}, ("kind", "value"))
CUSTOMER = obj({"id": ID, "name": {"type": "string"}, "created_at": TIME,
                "identities": array(IDENTITY)}, ("id", "name", "identities"))
CUSTOMER_VIEW = obj({
    "card": obj({"id": ID, "name": {"type": "string"}, "identities": array(IDENTITY),
                 "open_tasks": array({"type": "string"}), "since": TIME},
                ("id", "name", "identities")),
    "timeline": array(obj({"task_id": {"type": "string"}, "channel": {"type": "string"},
                           "queue": {"type": "string"}, "state": {"type": "string"},
                           "at": TIME}, ("task_id", "channel", "state", "at"))),
}, ("card", "timeline"))
CUSTOMER_EDIT = obj({
    "name": {"type": "string", "maxLength": 200},
    "identities": {"type": "array", "maxItems": 50, "items": obj({
        "kind": {"type": "string", "enum": ["email", "phone"]},
        "value": {"type": "string", "minLength": 1, "maxLength": 320}},
        ("kind", "value"), closed=True)},
}, ("name", "identities"), closed=True)
MERGE = obj({"merged_id": {"type": "string", "minLength": 1, "maxLength": 200}},
            ("merged_id",), closed=True)
MERGED = obj({"survivor_id": {"type": "string"}, "merged_id": {"type": "string"}},
             ("survivor_id", "merged_id"))

ANSWER = obj({"id": ID, "title": {"type": "string"}, "text": {"type": "string"},
              "language": {"type": "string"}, "queues": array({"type": "string"}),
              "categories": array({"type": "string"}), "version": {"type": "integer"},
              "retired": {"type": "boolean"}}, ("id", "title", "text", "version"))

REPORT = obj({"report": OBJECT, "definitions": OBJECT, "period": OBJECT, "agents": OBJECT,
              "intervals": array(OBJECT)}, ("report", "period", "agents", "intervals"),
             description="The figures of dispatcher/service/reports.py (docs/metrics.md)")

LEVELS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0,
                                                      "maximum": 10},
          "description": "skill name -> level 0-10"}
PER_CHANNEL = {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
               "description": "channel (email, phone) -> value"}
EXPRESSION = {"type": "string", "maxLength": 2000,
              "description": "a requirement expression over agents' skills and attributes and "
                             "tasks' attributes, e.g. support >= 5 AND languages HAS "
                             "task.language (docs/routing.md); \"\" for none"}
QUEUE = obj({
    "name": {"type": "string"},
    "requirement": LEVELS,
    "expression": EXPRESSION,
    "mode": {"type": "string", "enum": ["push", "pull"]},
    "agent_choice": {"type": "string", "enum": ["longest_idle", "highest_skill"]},
    "priority": {"type": "integer"},
    "steps": array(obj({"after_seconds": {"type": "number", "minimum": 0},
                        "requirement": LEVELS,
                        "expression": EXPRESSION | {
                            "description": "replaces the queue's expression from this step "
                                           "on (\"\" drops it; absent: kept)"}},
                       ("after_seconds", "requirement"),
                       description="an escalation step: after N s, this requirement")),
    "sl_target": PER_CHANNEL | {"description": "channel -> answer within N seconds"},
    "sl_share": {"type": "number", "minimum": 0, "maximum": 1,
                 "description": "the share of tasks to answer within sl_target"},
    "offer_timeout": PER_CHANNEL | {"description": "channel -> seconds an offer stands"},
    "wrap_up_seconds": {"type": "number", "minimum": 0},
    "deadline_rule": {"type": ["string", "null"],
                      "description": "e.g. \"sliding 24h\" or \"scheduled 12:00\""},
    "calendar": {"type": ["string", "null"]},
    "dispositions": array(obj({"code": {"type": "string"}, "label": {"type": "string"}},
                              ("code", "label"))),
    "disabled": {"type": "boolean"},
    "reserve": {"type": "integer", "minimum": 0,
                "description": "agents kept free of e-mail for its calls while they are at "
                               "risk (docs/routing.md)"},
}, ("name",), description="A queue's whole configuration (every setting), as "
                          "dispatcher/service/configuration.py queue_config gives it")
AGENT = obj({"id": {"type": "string"}, "name": {"type": "string"}, "skills": LEVELS,
             "attributes": {"type": "object", "maxProperties": 100,
                            "description": "what requirement expressions read beside skills: "
                                           "name -> a number, text, true/false or a list"},
             "queues": array({"type": "string"}),
             "capacity": {"type": "object", "additionalProperties": {"type": "integer",
                                                                      "minimum": 0}},
             "channels": array({"type": "string", "enum": ["email", "phone"]}),
             "disabled": {"type": "boolean"},
             "interruptions": {"type": ["object", "null"],
                               "description": "their own blend: held channel -> channels "
                                              "still offered; null: the centre's"}},
            ("id",), description="An agent's configuration (agent_config)")
CALENDAR = obj({"name": {"type": "string"}, "timezone": {"type": "string"},
                "hours": {"type": "object", "description": "weekday -> [[open, close], ...]"},
                "holidays": array({"type": "string", "format": "date"})}, ("name",),
               description="A business calendar (time zone, hours, holidays)")
CONFIG_IN = {"type": "object", "maxProperties": 100,
             "description": "the same fields the GET answers (checked by the configuration "
                            "service; an unknown field is a 400)"}
SKILLS_IN = obj({"skills": {"type": "object", "maxProperties": 100,
                            "additionalProperties": {"type": "integer", "minimum": 0,
                                                     "maximum": 10}}},
                ("skills",), closed=True)
SAVED = obj({"created": {"type": "boolean"}}, ("created",))

COMPONENTS: dict[str, Schema] = {
    "Problem": PROBLEM, "Task": TASK, "Event": EVENT, "Entry": ENTRY,
    "TaskDetail": TASK_DETAIL, "TaskPage": TASK_PAGE, "NewTask": NEW_TASK,
    "Customer": CUSTOMER, "CustomerView": CUSTOMER_VIEW, "Answer": ANSWER, "Report": REPORT,
    "Queue": QUEUE, "Agent": AGENT, "Calendar": CALENDAR,
}
