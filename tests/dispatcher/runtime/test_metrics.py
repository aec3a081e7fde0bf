"""`/metrics` on the real service layer (memory store, virtual clock): live queue figures,
offers counted from committed outcomes, today's service level from the log with the reports'
definitions, webhook attempts by outcome and the dead deliveries, process health, the lease
(a `Leadership` on a fake lease store; the App's wiring on PostgreSQL and SQLite); and the
exposition served by `MetricsPage`."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from dispatcher.runtime.app import App
from dispatcher.runtime.config import ClusterConfig, Config, DatabaseConfig
from dispatcher.runtime.metrics import Metrics, MetricsPage
from dispatcher.service.held import Held
from dispatcher.service.leadership import Leadership
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


# ---------------------------------------------------------------------- the lease

LEASE_SERIES = ("switchboard_lease_epoch", "switchboard_leader", "switchboard_lease_age_seconds",
                "switchboard_takeovers_total")


class Leases:
    """A lease store that answers at once: `holder` holds epoch `epoch` (None: free)."""

    def __init__(self, holder=None, epoch=6):
        self.holder, self.epoch = holder, epoch

    def claim(self, node, ttl, grace=0.0):
        won = self.holder in (None, node)
        if won and self.holder is None:
            self.holder, self.epoch = node, self.epoch + 1
        return succeed(SimpleNamespace(won=won, lease=SimpleNamespace(epoch=self.epoch,
                                                                      holder=self.holder)))

    def renew(self, node, epoch, ttl):
        return succeed(1e9 if (self.holder, self.epoch) == (node, epoch) else None)

    def release(self, node, epoch):
        return succeed(True)


def test_the_leaders_lease_epoch_age_since_the_last_renewal_and_takeovers():
    s = build_stack()
    clock = Clock()
    leadership = Leadership(Leases(), clock, "node-a", 9.0)  # renewed every 3 s
    metrics = Metrics(s.queries, s.clock, leadership=leadership)
    leadership.lead()
    clock.advance(2.5)
    got = scrape(metrics)
    assert got["switchboard_lease_epoch"] == {(): 7}
    assert got["switchboard_leader"] == {(): 1}
    assert got["switchboard_lease_age_seconds"] == {(): 2.5}
    assert got["switchboard_takeovers_total"] == {(): 1}
    clock.advance(0.5)  # renewed (and confirmed) at 3.0
    clock.advance(1.0)
    assert scrape(metrics)["switchboard_lease_age_seconds"] == {(): 1.0}


def test_a_standby_shows_the_leaders_epoch_not_leader_and_no_lease_age():
    s = build_stack()
    clock = Clock()
    leadership = Leadership(Leases(holder="node-b", epoch=4), clock, "node-a", 9.0)
    metrics = Metrics(s.queries, s.clock, leadership=leadership)
    leadership.lead()
    got = scrape(metrics)
    assert got["switchboard_lease_epoch"] == {(): 4}
    assert got["switchboard_leader"] == {(): 0}
    assert "switchboard_lease_age_seconds" not in got
    assert got["switchboard_takeovers_total"] == {(): 0}
    leadership.stop()


def test_a_deposed_leader_is_no_longer_leader_and_keeps_its_takeovers():
    s = build_stack()
    clock = Clock()
    leases = Leases()
    leadership = Leadership(leases, clock, "node-a", 9.0)
    metrics = Metrics(s.queries, s.clock, leadership=leadership)
    leadership.lead()
    leases.holder, leases.epoch = "node-b", 8  # another node took the lease: the renewal says so
    clock.advance(3.0)
    got = scrape(metrics)
    assert got["switchboard_leader"] == {(): 0}
    assert "switchboard_lease_age_seconds" not in got
    assert got["switchboard_takeovers_total"] == {(): 1}


def test_held_mail_how_much_and_the_oldest_age_read_at_scrape_time():
    s = build_stack()
    clock = Clock()
    clock.advance(1000.0)
    stored = {"oldest": (0, None)}
    held = Held(SimpleNamespace(oldest=lambda: succeed(stored["oldest"])), clock, "n1")
    metrics = Metrics(s.queries, s.clock)
    metrics.show_lease(Leadership(Leases(), clock, "n1", 9.0), held)
    metrics.refresh()
    got = scrape(metrics)
    assert got["switchboard_held_mail"] == {(): 0}
    assert got["switchboard_held_mail_oldest_seconds"] == {(): 0}
    stored["oldest"] = (3, 987.5)
    metrics.refresh()
    got = scrape(metrics)
    assert got["switchboard_held_mail"] == {(): 3}
    assert got["switchboard_held_mail_oldest_seconds"] == {(): 12.5}


def test_the_app_shows_the_lease_on_postgresql_and_not_on_sqlite(pg_url, tmp_path):
    apps = {name: App(Config(database=DatabaseConfig(url), cluster=ClusterConfig(node="n1")),
                      reactor)
            for name, url in (("pg", pg_url), ("sqlite", f"sqlite:///{tmp_path}/sb.db"))}
    try:
        pg, sqlite = (scrape(apps[name].metrics) for name in ("pg", "sqlite"))
    finally:
        for app in apps.values():
            app.storage.engine.dispose()
    assert pg["switchboard_leader"] == {(): 0}  # not started: a standby that has seen no lease
    assert pg["switchboard_takeovers_total"] == {(): 0}
    assert "switchboard_uptime_seconds" in sqlite
    assert not [name for name in LEASE_SERIES if name in sqlite]
