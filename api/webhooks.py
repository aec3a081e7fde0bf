"""`/api/v1/webhooks`: subscriptions (URL, event kinds, secret), their deliveries, redelivery
(dispatcher.service.webhooks.Webhooks), for supervisors and integrations."""

from __future__ import annotations

from typing import Any

from dispatcher.service.access import roles_for

from . import schemas as s
from .routes import Call, Param, Reply, Route
from .services import Services, plain

SYSTEMS = roles_for("webhooks")
ID = Param("id", "path", s.ID, "the subscription's id", required=True)
SUBSCRIPTION = s.obj({"id": s.ID, "url": {"type": "string"},
                      "kinds": s.array({"type": "string"}), "created_at": s.TIME,
                      "created_by": {"type": "string"}, "disabled": {"type": "boolean"}},
                     ("id", "url", "kinds"))
DELIVERY = s.obj({
    "id": {"type": "integer"}, "subscription_id": {"type": "string"},
    "event_id": {"type": "string", "description": "the receiver's de-duplication key"},
    "kind": {"type": "string"},
    "state": {"type": "string", "enum": ["pending", "delivered", "dead"]},
    "attempts": {"type": "integer", "description": "POSTs made so far"},
    "created_at": s.TIME,
    "next_attempt_at": {**s.MAYBE_TIME, "description": "when a pending delivery is tried "
                                                       "next; null once delivered or dead"},
    "last_status": {"type": ["integer", "null"],
                    "description": "the HTTP status of the last attempt; null when it got "
                                   "no answer (refused, timed out) or none was made yet"},
    "last_error": {**s.MAYBE_TEXT, "description": "why the last attempt failed"},
    "delivered_at": {**s.MAYBE_TIME, "description": "when a receiver answered 2xx"},
}, ("id", "subscription_id", "event_id", "kind", "state", "attempts", "created_at"))
NEW = s.obj({
    "url": {"type": "string", "minLength": 1, "maxLength": 2048,
            "description": "an absolute http(s) URL"},
    "kinds": {"type": "array", "minItems": 1, "maxItems": 100,
              "items": {"type": "string", "minLength": 1, "maxLength": 100},
              "description": "event kinds (e.g. task.completed), a family (task.*) or *"},
    "secret": {"type": "string", "minLength": 16, "maxLength": 256,
               "description": "the HMAC-SHA256 key; made for you when absent"},
}, ("url", "kinds"), closed=True)
CREATED = s.obj({"subscription": SUBSCRIPTION, "secret": {"type": "string",
                                                          "description": "shown this once"}},
                ("subscription", "secret"))


async def list_subscriptions(services: Services, call: Call) -> Any:
    return plain(await services.need_webhooks().subscriptions())


async def subscribe(services: Services, call: Call) -> Any:
    b = call.body
    sub, secret = await services.need_webhooks().subscribe(b["url"], b["kinds"], call.actor,
                                                            b.get("secret"))
    return Reply({"subscription": plain(sub), "secret": secret}, 201)


async def show(services: Services, call: Call) -> Any:
    return plain(await services.need_webhooks().subscription(call.params["id"]))


async def unsubscribe(services: Services, call: Call) -> Any:
    await services.need_webhooks().unsubscribe(call.params["id"], call.actor)
    return {"removed": call.params["id"]}


async def deliveries(services: Services, call: Call) -> Any:
    p = call.params
    return plain(await services.need_webhooks().deliveries(
        p["id"], p.get("state"), p.get("limit", 50), p.get("before")))


async def redeliver(services: Services, call: Call) -> Any:
    await services.need_webhooks().redeliver(call.params["id"], call.params["delivery"],
                                              call.actor)
    return Reply({"redelivered": call.params["delivery"]}, 202)


ROUTES = [
    Route("GET", "/webhooks", "Webhook subscriptions", SYSTEMS, list_subscriptions,
          s.array(SUBSCRIPTION), tag="webhooks"),
    Route("POST", "/webhooks", "Subscribe a URL to event kinds", SYSTEMS, subscribe, CREATED,
          body=NEW, status=201, tag="webhooks",
          description="Deliveries are signed: see docs/webhooks.md."),
    Route("GET", "/webhooks/{id}", "One subscription", SYSTEMS, show, SUBSCRIPTION,
          params=(ID,), tag="webhooks"),
    Route("DELETE", "/webhooks/{id}", "Remove a subscription (pending deliveries are not "
          "sent)", SYSTEMS, unsubscribe, s.obj({"removed": {"type": "string"}}, ("removed",)),
          params=(ID,), tag="webhooks"),
    Route("GET", "/webhooks/{id}/deliveries", "A subscription's deliveries, newest first",
          SYSTEMS, deliveries, s.array(DELIVERY), params=(
              ID, Param("state", "query", {"type": "string",
                                           "enum": ["pending", "delivered", "dead"]}),
              Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500,
                                       "default": 50}),
              Param("before", "query", {"type": "integer", "minimum": 1},
                    "the last delivery id seen (paging)")), tag="webhooks"),
    Route("POST", "/webhooks/{id}/deliveries/{delivery}/redeliver",
          "Send a delivery again from its first attempt", SYSTEMS, redeliver,
          s.obj({"redelivered": {"type": "integer"}}, ("redelivered",)),
          params=(ID, Param("delivery", "path", {"type": "integer", "minimum": 1},
                            required=True)), status=202, tag="webhooks"),
]
