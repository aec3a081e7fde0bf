"""`/api/v1/customers`: search, show (with history), edit, merge. The rule of who may lives in
the services: `BackOffice` (supervisors) and `History.view_for` (an agent reads the customers
of the work they hold or are offered; an integration reads no customer)."""

from __future__ import annotations

from typing import Any

from dispatcher.service.access import roles_for
from dispatcher.service.backoffice import Caller

from . import schemas as s
from .routes import Call, Param, Route
from .services import Services, plain

ID = Param("id", "path", s.ID, "the customer's id", required=True)


async def search(services: Services, call: Call) -> Any:
    found = await services.need_backoffice().find_customers(Caller(call.sub, call.role),
                                                             call.params["q"])
    return plain(found)


async def show(services: Services, call: Call) -> Any:
    if call.role == "supervisor":
        view = await services.need_backoffice().customer(Caller(call.sub, call.role),
                                                          call.params["id"])
    else:
        view = await services.need_history().view_for(call.role, call.sub, call.params["id"])
    return plain(view)


async def edit(services: Services, call: Call) -> Any:
    pairs = [(i["kind"], i["value"]) for i in call.body["identities"]]
    return plain(await services.need_backoffice().edit_customer(
        Caller(call.sub, call.role), call.params["id"], call.body["name"], pairs))


async def merge(services: Services, call: Call) -> Any:
    merged = await services.need_backoffice().merge_customers(
        Caller(call.sub, call.role), call.params["id"], call.body["merged_id"])
    return {"survivor_id": call.params["id"], "merged_id": call.body["merged_id"],
            "result": plain(merged)}


ROUTES = [
    Route("GET", "/customers", "Search customers by name or identity",
          roles_for("customers.search"), search,
          s.array(s.ref("Customer")),
          params=(Param("q", "query", {"type": "string", "minLength": 1, "maxLength": 200},
                        "what was typed: a name, an address, a number", required=True),),
          tag="customers"),
    Route("GET", "/customers/{id}", "A customer's card and history",
          roles_for("customers.read"), show,
          s.ref("CustomerView"), params=(ID,), tag="customers",
          description="Agents: only the customers of the work they hold or are offered."),
    Route("PUT", "/customers/{id}", "Set a customer's name and identities",
          roles_for("customers.change"), edit,
          s.ref("Customer"), params=(ID,), body=s.CUSTOMER_EDIT, tag="customers"),
    Route("POST", "/customers/{id}/merge", "Merge another customer into this one",
          roles_for("customers.change"),
          merge, s.MERGED, params=(ID,), body=s.MERGE, tag="customers"),
]
