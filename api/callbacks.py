"""`/api/v1/callbacks`: ask for a phone callback (issue 18): a callback task in a queue, to call
a number within an optional window, through `dispatcher.service.callbacks` (which checks the
number, the window and the queue, and joins the number to the customer's identities)."""

from __future__ import annotations

from typing import Any

from dispatcher.service.access import roles_for
from dispatcher.service.tasks import summary_of

from . import schemas as s
from .routes import Call, Reply, Route
from .services import Services, plain

CHANGE = roles_for("tasks.change")

NEW_CALLBACK = s.obj({
    "number": {"type": "string", "minLength": 3, "maxLength": 40,
               "description": "the number to call: digits, an optional leading +, spaces, "
                              "dots, dashes and brackets allowed"},
    "queue": {"type": "string", "minLength": 1, "maxLength": 200},
    "not_before": {**s.TIME, "description": "the window's start (seconds since the epoch, "
                                            "UTC): not offered before; the task's age starts "
                                            "here"},
    "not_after": {**s.TIME, "description": "the window's end: no attempt after it"},
    "name": {"type": "string", "maxLength": 200},
    "email": {"type": "string", "maxLength": 320,
              "description": "the customer's address: a known customer gets the number"},
    "attempts": {"type": "integer", "minimum": 1, "maximum": 10,
                 "description": "dials of the customer at most (default: the phone "
                                "settings' callback_attempts)"},
    "note": {"type": "string", "maxLength": 1000},
}, ("number", "queue"), closed=True,
    description="A callback to make: a phone task waiting in the queue, offered to an agent "
                "who is then called first, then the customer.")


async def request_callback(services: Services, call: Call) -> Any:
    b = call.body
    task = await services.need_callbacks().request(
        b["number"], b["queue"], origin="api", not_before=b.get("not_before"),
        not_after=b.get("not_after"), name=b.get("name", ""), email=b.get("email"),
        attempts=b.get("attempts"), note=b.get("note", ""), actor=call.actor)
    return Reply(plain(summary_of(task)), 201)


ROUTES = [
    Route("POST", "/callbacks", "Ask for a phone callback (a callback task in a queue)", CHANGE,
          request_callback, s.ref("Task"), body=NEW_CALLBACK, status=201, tag="callbacks",
          description="Answered 201 once the task is stored. Before `not_before` it waits "
                      "aside (not offered); its attributes carry `callback` (number, origin, "
                      "window, attempts). docs/phone.md \"Callbacks\"."),
]
