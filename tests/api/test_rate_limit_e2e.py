"""The API's request budget per token holder, against a running server: past `[api]
rate_limit_burst` requests a holder gets 429 with Retry-After (a problem), logged without the
token; another holder and the public OpenAPI document are still served; 0 turns it off."""

from __future__ import annotations

from pathlib import Path

from api.config import ApiSettings
from api.plugin import budget_for
from tests.api.conftest import started, token

BURST = 3


def test_a_holder_over_its_budget_gets_429_with_retry_after(tmp_path: Path) -> None:
    with started(tmp_path, SWITCHBOARD_API_RATE_LIMIT_PER_SECOND="0.2",
                 SWITCHBOARD_API_RATE_LIMIT_BURST=str(BURST)) as server:
        bearer = token("boss", "supervisor")
        for _ in range(BURST):
            assert server.call("GET", "/api/v1/queues", bearer=bearer).status == 200
        # Another token of the same holder shares the budget.
        over = server.call("GET", "/api/v1/queues", role="supervisor")
        assert over.status == 429, over.body
        assert over.headers["content-type"] == "application/problem+json"
        assert over.body["type"] == "urn:switchboard:problem:too_many_requests"
        wait = int(over.headers["retry-after"])
        assert 1 <= wait <= 5 and over.body["retry_after"] == wait
        assert server.call("GET", "/api/v1/tasks", role="integration").status == 200
        assert server.call("GET", "/api/v1/openapi.json").status == 200
        log = server.log.read_text()
        assert "supervisor boss is over its request budget" in log
        assert bearer not in log


def test_zero_turns_the_budget_off() -> None:
    assert budget_for(ApiSettings(rate_limit_per_second=0)) is None
    budget = budget_for(ApiSettings(rate_limit_per_second=2.0, rate_limit_burst=0))
    assert budget is not None and (budget.rate, budget.burst) == (2.0, 1)
