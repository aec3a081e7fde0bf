"""`/metrics`: the Prometheus exposition of the live dispatcher (docs/operations.md).

Sits in the runtime (it wires the router's read model, the event log and the process). What it
promises: its own `CollectorRegistry` (nothing global, two apps in one process do not clash);
values read at scrape time — queue depth, longest wait and agents by presence from `Queries`
(the router's memory), today's service level per queue and channel from `reports.Today` (the
same definitions as the reports, refreshed incrementally from the log), offers made, accepted,
rejected, expired and withdrawn counted from committed outcomes since the process started,
webhook POSTs by outcome (delivered, retry, dead: the deliverer's `on_result`) and the dead
deliveries now (one index count at scrape time), and process health: uptime, event-loop lag (a timer that measures how late it fires), group
commits and the calls they carried; on PostgreSQL the lease (service/leadership.py): its epoch,
whether this node leads, the age of its last confirmed renewal, the leases it won, and the
mail held by nodes that do not route (how much, the oldest's age: one query). A scrape
never changes the dispatcher's state; if today's figures cannot be read the other metrics are
still served.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Presence
from dispatcher.domain.metrics import Figures
from dispatcher.service.leadership import LEADER

log = logging.getLogger(__name__)

PREFIX = "switchboard"
LAG_PROBE_SECONDS = 1.0  # the event-loop lag timer's period
OFFER_KINDS = {
    ev.TASK_OFFERED: "made",
    ev.OFFER_ACCEPTED: "accepted",
    ev.OFFER_REJECTED: "rejected",
    ev.OFFER_EXPIRED: "expired",
    ev.OFFER_WITHDRAWN: "withdrawn",
}
WEBHOOK_OUTCOMES = ("delivered", "retry", "dead")  # dispatcher.service.webhooks.Deliverer


class LagProbe:
    """How late a periodic timer fires: the reactor's event-loop lag, in seconds."""

    def __init__(self, reactor: Any, clock: Any = time.monotonic) -> None:
        self.reactor, self.clock = reactor, clock
        self.last = 0.0
        self.worst = 0.0
        self._expected: float | None = None
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor

    def start(self) -> None:
        if not self._loop.running:
            self._expected = self.clock() + LAG_PROBE_SECONDS
            self._loop.start(LAG_PROBE_SECONDS, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _tick(self) -> None:
        now = self.clock()
        if self._expected is not None:
            self.last = max(0.0, now - self._expected)
            self.worst = max(self.worst, self.last)
        self._expected = now + LAG_PROBE_SECONDS


class LiveCollector:
    """The custom collector: everything read when Prometheus scrapes."""

    def __init__(self, queries: Any, clock: Any, commit: Any = None,
                 started: float | None = None, leadership: Any = None) -> None:
        self.queries = queries
        self.clock = clock
        self.commit = commit
        self.leadership = leadership  # a Leadership (PostgreSQL), or None: no lease
        self.started = time.time() if started is None else started
        self.offers: Counter[tuple[str, str]] = Counter()  # (queue, outcome) -> count
        self.webhooks: Counter[str] = Counter()  # webhook POST outcome -> count
        self.dead_deliveries: int | None = None  # read at scrape time; None: unknown
        self.held: tuple[int, float] | None = None  # held mail: count, oldest's age; None: -
        self._offer_queue: dict[str, str] = {}  # pending offer id -> queue
        self.today: Figures | None = None
        self.lag: LagProbe | None = None

    def on_outcome(self, outcome: Any) -> None:
        """An assignment listener: count the offers of each committed outcome, by the queue
        the task was in when it was offered."""
        for e in outcome.events:
            what = OFFER_KINDS.get(e.kind)
            if what is None:
                continue
            offer_id = e.data.get("offer_id")
            if e.kind == ev.TASK_OFFERED:
                task = self.queries.task(e.task_id) if e.task_id else None
                queue = task.queue if task is not None else ""
                if offer_id:
                    self._offer_queue[offer_id] = queue
            else:
                queue = self._offer_queue.pop(offer_id, "") if offer_id else ""
            self.offers[(queue, what)] += 1

    def on_webhook(self, outcome: str) -> None:
        """The deliverer's hook: one POST settled as delivered, retry or dead."""
        self.webhooks[outcome] += 1

    def collect(self) -> Any:
        now = self.clock.seconds()
        depth = GaugeMetricFamily(f"{PREFIX}_queue_waiting", "Tasks waiting in the queue",
                                  labels=["queue", "channel"])
        wait = GaugeMetricFamily(f"{PREFIX}_queue_longest_wait_seconds",
                                 "Age of the oldest waiting task", labels=["queue", "channel"])
        free = GaugeMetricFamily(f"{PREFIX}_queue_agents_available",
                                 "Members who could take a task of the channel now",
                                 labels=["queue", "channel"])
        for q in self.queries.queue_figures(now):
            depth.add_metric([q.queue, q.channel], q.waiting)
            wait.add_metric([q.queue, q.channel], q.longest_wait)
            free.add_metric([q.queue, q.channel], q.available)
        yield depth
        yield wait
        yield free
        presence = GaugeMetricFamily(f"{PREFIX}_agents", "Agents by presence",
                                     labels=["presence"])
        counts = Counter(self.queries.agent_presence().values())
        for p in Presence:
            if p is not Presence.OFFLINE:
                presence.add_metric([p.value], counts.get(p.value, 0))
        yield presence
        offers = CounterMetricFamily(f"{PREFIX}_offers", "Offers since the process started",
                                     labels=["queue", "outcome"])
        for (queue, what), n in sorted(self.offers.items()):
            offers.add_metric([queue, what], n)
        yield offers
        hooks = CounterMetricFamily(f"{PREFIX}_webhook_attempts",
                                    "Webhook POSTs since the process started, by outcome",
                                    labels=["outcome"])
        for what in WEBHOOK_OUTCOMES:
            hooks.add_metric([what], self.webhooks.get(what, 0))
        yield hooks
        if self.dead_deliveries is not None:
            yield GaugeMetricFamily(f"{PREFIX}_webhook_deliveries_dead",
                                    "Dead webhook deliveries (all subscriptions), now",
                                    value=self.dead_deliveries)
        if self.today is not None:
            yield from self._today(self.today)
        yield GaugeMetricFamily(f"{PREFIX}_uptime_seconds", "Seconds since the process started",
                                value=time.time() - self.started)
        if self.lag is not None:
            yield GaugeMetricFamily(f"{PREFIX}_event_loop_lag_seconds",
                                    "How late the last 1 s timer fired", value=self.lag.last)
            yield GaugeMetricFamily(f"{PREFIX}_event_loop_lag_max_seconds",
                                    "The worst event-loop lag seen", value=self.lag.worst)
        if self.commit is not None:
            yield CounterMetricFamily(f"{PREFIX}_db_commits", "Group commits (transactions)",
                                      value=self.commit.commits)
            yield CounterMetricFamily(f"{PREFIX}_db_commit_calls",
                                      "Store calls carried by the group commits",
                                      value=self.commit.calls)
        if self.leadership is not None:
            yield from self._lease(self.leadership)
        if self.held is not None:
            yield GaugeMetricFamily(f"{PREFIX}_held_mail",
                                    "Mail held by nodes that do not route, not taken in yet",
                                    value=self.held[0])
            yield GaugeMetricFamily(f"{PREFIX}_held_mail_oldest_seconds",
                                    "Age of the oldest held mail (0: none): the router's lag",
                                    value=self.held[1])

    def _lease(self, leadership: Any) -> Any:
        status = leadership.status()
        if status["epoch"] is not None:
            yield GaugeMetricFamily(f"{PREFIX}_lease_epoch",
                                    "The lease's epoch this node last saw (held or not)",
                                    value=status["epoch"])
        yield GaugeMetricFamily(f"{PREFIX}_leader", "1 when this node holds the lease and routes",
                                value=1 if status["role"] == LEADER else 0)
        if status["lease_age_seconds"] is not None:
            yield GaugeMetricFamily(f"{PREFIX}_lease_age_seconds",
                                    "Since the last renewal the database confirmed (leader only)",
                                    value=status["lease_age_seconds"])
        yield CounterMetricFamily(f"{PREFIX}_takeovers", "Leases won by this process",
                                  value=leadership.takeovers)

    def _today(self, f: Figures) -> Any:
        sl = GaugeMetricFamily(f"{PREFIX}_service_level_today",
                               "Share of requests settled today within target (docs/metrics.md)",
                               labels=["queue", "channel"])
        settled = GaugeMetricFamily(f"{PREFIX}_service_level_settled_today",
                                    "Requests settled today (the service level's denominator)",
                                    labels=["queue", "channel"])
        for key in f.keys("queue_channel"):
            queue, _, channel = key.rpartition("/")
            cell = f.cell("queue_channel", key)
            value = cell.value("service_level")
            if value is not None:
                sl.add_metric([queue, channel], value)
            settled.add_metric([queue, channel], cell.counts.get("sl_total", 0))
        yield sl
        yield settled
        events = f.cell()
        for name, metric in (("calls_abandoned", "calls_abandoned_today"),
                             ("calls_answered", "calls_answered_today"),
                             ("emails_received", "emails_received_today"),
                             ("replies", "replies_today")):
            yield GaugeMetricFamily(f"{PREFIX}_{metric}", METRIC_HELP[name],
                                    value=events.counts.get(name, 0))


METRIC_HELP = {
    "calls_abandoned": "Callers who hung up before an answer, today",
    "calls_answered": "Calls answered today",
    "emails_received": "Inbound e-mails today",
    "replies": "Answers to customers queued today",
}


class Metrics:
    """The registry, its collector and the probes; `start()` / `stop()` with the app."""

    def __init__(self, queries: Any, reactor: Any, today: Any = None, commit: Any = None,
                 webhooks: Any = None, leadership: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = LiveCollector(queries, reactor, commit, leadership=leadership)
        self.collector.lag = LagProbe(reactor)
        self.registry.register(self.collector)
        self.today = today
        self.webhooks = webhooks  # a WebhookStore, for the dead deliveries' gauge
        self.held: Any = None  # service/held.py Held, for the held mail's gauges

    def refresh(self) -> Deferred[None] | None:
        """Read what a scrape shows from the database (today's figures, the dead deliveries);
        None when there is nothing to read. A failed read is logged and the rest served."""
        if self.today is None and self.webhooks is None and self.held is None:
            return None
        d: Deferred[Any] = succeed(None)
        if self.today is not None:
            d.addCallback(lambda _: self.today.refresh())
            d.addCallbacks(self._refreshed, self._failed, errbackArgs=("today's figures",))
        if self.webhooks is not None:
            d.addCallback(lambda _: self.webhooks.dead_count())
            d.addCallbacks(self._counted, self._failed, errbackArgs=("dead deliveries",))
        if self.held is not None:
            d.addCallback(lambda _: self.held.backlog())
            d.addCallbacks(self._held, self._failed, errbackArgs=("held mail",))
        return d

    def _held(self, backlog: tuple[int, float]) -> None:
        self.collector.held = backlog

    def _refreshed(self, figures: Figures) -> None:
        self.collector.today = figures

    def _counted(self, dead: int) -> None:
        self.collector.dead_deliveries = dead

    def _failed(self, failure: Any, what: str) -> None:
        if what == "dead deliveries":
            self.collector.dead_deliveries = None
        if what == "held mail":
            self.collector.held = None
        log.warning("metrics: %s not refreshed: %s", what, failure.getErrorMessage())

    def show_lease(self, leadership: Any, held: Any = None) -> None:
        """Expose this Leadership's gauges from now on (the app builds it after the metrics),
        and with `held` (service/held.py) the mail held for the router: how much, how old."""
        self.collector.leadership = leadership
        self.held = held

    def start(self) -> None:
        if self.collector.lag is not None:
            self.collector.lag.start()

    def stop(self) -> None:
        if self.collector.lag is not None:
            self.collector.lag.stop()

    def on_outcome(self, outcome: Any) -> None:
        self.collector.on_outcome(outcome)

    def on_webhook(self, outcome: str) -> None:
        self.collector.on_webhook(outcome)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsPage(Resource):
    """`GET /metrics`: refresh what is read from the database (if it can), then expose
    everything. No token:
    like /healthz it is for the monitoring network (no customer or agent names in it; agents
    are counted, never named) — keep it off the public side of a proxy (docs/operations.md)."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Any) -> Any:
        pending = self.metrics.refresh()
        if pending is None:
            return self._body(request)

        def write(_: Any) -> None:
            if not getattr(request, "_disconnected", False):
                request.write(self._body(request))
                request.finish()

        pending.addCallback(write)
        return NOT_DONE_YET

    def _body(self, request: Any) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        request.setHeader(b"cache-control", b"no-store")
        return self.metrics.exposition()
