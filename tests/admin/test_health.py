"""`/healthz` (admin/health.py) over `dispatcher.service.health.Readiness`: the routing state's
size, the database round trip, 503 when the database does not answer in time."""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from admin.health import HEALTH_DATABASE_TIMEOUT_SECONDS, Health
from dispatcher.domain.routing import Router
from dispatcher.service.health import Readiness


def answer(health: Health) -> tuple[int, dict]:
    request = DummyRequest([b""])
    body = health.render_GET(request)
    if isinstance(body, bytes):
        request.write(body)
    return request.responseCode or 200, json.loads(b"".join(request.written))


def test_without_a_database_probe_it_says_the_routing_state():
    code, state = answer(Health(Readiness(Router(new_offer_id=lambda: "o"))))
    assert code == 200 and state["status"] == "ok"
    assert (state["queues"], state["agents"], state["open_tasks"]) == (0, 0, 0)
    assert "database" not in state


def test_the_database_answers_or_it_is_degraded():
    router = Router(new_offer_id=lambda: "o")
    code, state = answer(Health(Readiness(router, lambda: succeed(0.002)), Clock()))
    assert code == 200 and state["database"] == "ok" and state["database_seconds"] == 0.002
    code, state = answer(Health(Readiness(router, lambda: fail(OSError("gone"))), Clock()))
    assert code == 503 and state["status"] == "degraded" and "gone" in state["database"]


def test_a_database_that_hangs_is_degraded_after_the_timeout():
    clock = Clock()
    request = DummyRequest([b""])
    Health(Readiness(Router(new_offer_id=lambda: "o"), lambda: Deferred()), clock
           ).render_GET(request)
    assert request.written == []
    clock.advance(HEALTH_DATABASE_TIMEOUT_SECONDS)
    assert request.responseCode == 503
    assert json.loads(b"".join(request.written))["status"] == "degraded"
