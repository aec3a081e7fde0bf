"""`/metrics` on the real service layer (memory store, virtual clock): live queue figures,
offers counted from committed outcomes, today's service level from the log with the reports'
definitions, webhook attempts by outcome and the dead deliveries, process health; and the
exposition served by `MetricsPage`."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.web.test.requesthelper import DummyRequest

from dispatcher.runtime.metrics import Metrics, MetricsPage
from dispatcher.service.ports import WebhookSubscription
from dispatcher.service.reports import Today
from dispatcher.service.webhooks import matches
from dispatcher.storage.webhooks import MemoryWebhooks
from tests.dispatcher.service.stacks import build_stack, support_queue
from tests.dispatcher.storage.test_webhooks import created

DAY = 86_400.0


def scrape(metrics: Metrics) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def stack_with_metrics():
    s = build_stack()
    s.put_queue(support_queue())
    s.put_agent("ann", 8)
    today = Today(s.store, s.store, s.clock, day_start=lambda now: now // DAY * DAY)
    metrics = Metrics(s.queries, s.clock, today)
    s.assignment.listen(metrics.on_outcome)
    return s, metrics, today


def test_live_figures_offers_and_service_level_today():
    s, metrics, today = stack_with_metrics()
    first = s.call()
    s.call()
    s.advance(12)
    got = scrape(metrics)
    key = (("channel", "phone"), ("queue", "support"))
    assert got["switchboard_queue_waiting"][key] == 2
    assert got["switchboard_queue_longest_wait_seconds"][key] == 12
    s.login("ann")  # offered the first call at once
    s.advance(3)
    s.wait(s.sessions.accept("ann", s.last_offer("ann").id))  # answered after 15 s
    s.wait(s.sessions.complete("ann", first.id))
    s.advance(25)  # the second call: offered to ann, who lets it ring out
    metrics.collector.today = s.wait(today.refresh())
    got = scrape(metrics)
    offers = got["switchboard_offers_total"]
    assert offers[(("outcome", "made"), ("queue", "support"))] == 2
    assert offers[(("outcome", "accepted"), ("queue", "support"))] == 1
    assert offers[(("outcome", "expired"), ("queue", "support"))] == 1
    assert got["switchboard_agents"][(("presence", "not_responding"),)] == 1
    # One call settled today, within the default 20 s target.
    assert got["switchboard_service_level_today"][key] == 1.0
    assert got["switchboard_service_level_settled_today"][key] == 1
    assert got["switchboard_calls_answered_today"][()] == 1
    assert got["switchboard_uptime_seconds"][()] >= 0


def test_metrics_page_refreshes_today_then_serves_text():
    s, metrics, _ = stack_with_metrics()
    s.call()
    s.login("ann")
    s.wait(s.sessions.accept("ann", s.last_offer("ann").id))
    page = MetricsPage(metrics)
    request = DummyRequest([b""])
    page.render_GET(request)  # the memory store answers at once
    assert request.finished
    body = b"".join(request.written).decode()
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    assert 'switchboard_service_level_today{channel="phone",queue="support"} 1.0' in body
    assert "switchboard_event_loop_lag_seconds" in body


def test_a_failing_today_still_serves_the_rest():
    s, metrics, today = stack_with_metrics()

    def broken(*a, **k):
        raise RuntimeError("database down")

    today.events = type("Broken", (), {"fold_events": staticmethod(broken)})()
    request = DummyRequest([b""])
    MetricsPage(metrics).render_GET(request)
    assert request.finished
    assert b"switchboard_queue_waiting" in b"".join(request.written)


def test_webhook_attempts_by_outcome_and_dead_deliveries_now():
    s = build_stack()
    hooks = MemoryWebhooks()
    metrics = Metrics(s.queries, s.clock, webhooks=hooks)
    for outcome in ("retry", "retry", "delivered", "dead"):
        metrics.on_webhook(outcome)
    s.wait(hooks.add_subscription(WebhookSubscription("s1", "https://crm.example/", ("*",),
                                                      0.0, "op"), "secret-one"))
    hooks.append(created("t1"))
    s.wait(hooks.fan_out(10.0, 5.0, 100, matches))
    (due,) = s.wait(hooks.due(10.0, 10))
    s.wait(hooks.failed(due.id, 10.0, 500, "HTTP 500", None))
    request = DummyRequest([b""])
    MetricsPage(metrics).render_GET(request)
    assert request.finished
    got = scrape(metrics)
    assert got["switchboard_webhook_attempts_total"] == {
        (("outcome", "delivered"),): 1, (("outcome", "retry"),): 2, (("outcome", "dead"),): 1}
    assert got["switchboard_webhook_deliveries_dead"] == {(): 1}


def test_an_unreadable_dead_count_drops_only_that_gauge():
    s = build_stack()

    class Down:
        def dead_count(self):
            raise RuntimeError("database down")

    metrics = Metrics(s.queries, s.clock, webhooks=Down())
    metrics.collector.dead_deliveries = 3
    request = DummyRequest([b""])
    MetricsPage(metrics).render_GET(request)
    assert request.finished
    got = scrape(metrics)
    assert "switchboard_webhook_deliveries_dead" not in got
    assert got["switchboard_webhook_attempts_total"][(("outcome", "dead"),)] == 0
