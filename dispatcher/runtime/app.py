"""The composition root: builds the store, the router and the services from a Config, and
starts and stops them. Constructor injection only; nothing else creates concrete classes.

`Storage` is the database side alone, and `CommandServices` the services over it that the
edges' commands get (the admin edge's, the console's `token`); `App` is the whole dispatcher
(for `serve`, `demo`): on start it refuses a stale schema, on PostgreSQL waits until it holds
the database's lease (`lead`: one router per database, its writes fenced by the lease's
epoch), rebuilds the router from the database and re-arms every timer, in slices with the
reactor running between them (service/slices.py: the lease is renewed meanwhile, whatever the
number of open tasks).
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred

from dispatcher.domain.agents import interruptions
from dispatcher.domain.deadlines import BusinessCalendar
from dispatcher.domain.routing import Router
from dispatcher.service import tokens
from dispatcher.service.accounts import Accounts
from dispatcher.service.answers import Library
from dispatcher.service.assignment import Assignment
from dispatcher.service.backoffice import BackOffice
from dispatcher.service.blending import Blending
from dispatcher.service.calls import Calls
from dispatcher.service.codification import Codification
from dispatcher.service.collaboration import Collaboration
from dispatcher.service.configuration import Configuration, ConfigurationWatch
from dispatcher.service.conversation import Conversation
from dispatcher.service.customers import Customers
from dispatcher.service.edges import Edge, EdgeCommandContext, EdgeContext, EdgeSpec
from dispatcher.service.health import Readiness
from dispatcher.service.held import Held
from dispatcher.service.history import History
from dispatcher.service.history_cache import HistoryCache, WatchedStore
from dispatcher.service.intake import Intake
from dispatcher.service.leadership import LEADER, Leadership
from dispatcher.service.mail import Mail
from dispatcher.service.nodes import Nodes
from dispatcher.service.queries import Queries
from dispatcher.service.records import Records
from dispatcher.service.recovery import Recovery
from dispatcher.service.reports import Reports, Today
from dispatcher.service.review import AnswerServices, Review
from dispatcher.service.revocation import TokenRevocation
from dispatcher.service.sessions import Sessions
from dispatcher.service.supervision import Balancing, Supervision
from dispatcher.service.tasks import Tasks
from dispatcher.service.token_settings import verifier_from
from dispatcher.service.webhooks import Deliverer, Webhooks
from dispatcher.storage import schema
from dispatcher.storage.accounts import SqlAccounts
from dispatcher.storage.answers import SqlAnswerStore
from dispatcher.storage.codification import SqlCodificationStore, SqlCollaborationStore
from dispatcher.storage.commit import POSTGRES_IN_FLIGHT, SQLITE_IN_FLIGHT, GroupCommit
from dispatcher.storage.configuration import SqlConfigurationLog
from dispatcher.storage.engine import is_sqlite, make_engine
from dispatcher.storage.held import SqlHeldMail
from dispatcher.storage.lease import SqlLeases
from dispatcher.storage.nodes import SqlNodes
from dispatcher.storage.phones import SqlPhones
from dispatcher.storage.pool import Pool, hand_over_sooner
from dispatcher.storage.reports import SqlReportStore
from dispatcher.storage.revocations import SqlRevocations
from dispatcher.storage.secrets import SqlSecrets
from dispatcher.storage.sql import SqlStore
from dispatcher.storage.uploads import SqlUploads
from dispatcher.storage.webhooks import SqlWebhooks
from dispatcher.webhook_http import HttpPoster

from .collector import Collector
from .config import Config
from .metrics import Metrics, MetricsPage
from .peers import advertised_host

log = logging.getLogger(__name__)

CONSOLE_EDGE = "console"  # whose token settings /report accepts
IDLE_SHARE = 0.5  # of the lease: how long a routing session may sit idle in a transaction


class StaleSchema(Exception):
    def __init__(self, status: schema.SchemaStatus) -> None:
        super().__init__(
            f"the database schema is at {status.current or 'nothing'}, this version needs "
            f"{status.head}; {schema.STALE_SCHEMA_HINT}"
        )


class Storage:
    """Engine, thread pool, group commit and store for one database URL."""

    def __init__(self, url: str, reactor: Any, idle_in_transaction: float | None = None) -> None:
        """`idle_in_transaction` (PostgreSQL): seconds after which the server ends a session of
        ours left inside a transaction (a paused process must not hold the lease's fence)."""
        self.url = url
        self.engine = make_engine(url, idle_in_transaction_seconds=idle_in_transaction)
        self.pool = Pool(self.engine, reactor)
        in_flight = SQLITE_IN_FLIGHT if is_sqlite(self.engine) else POSTGRES_IN_FLIGHT
        self.commit = GroupCommit(self.pool, reactor, in_flight)  # batches committing at once
        self.store = SqlStore(self.pool, self.commit)
        self.phones = SqlPhones(self.pool, time.time)
        self.answers = SqlAnswerStore(self.pool, self.commit)  # library, KB, review
        self.codes = SqlCodificationStore(self.pool, self.commit)  # categories, rules
        self.collab = SqlCollaborationStore(self.pool, self.commit)  # notes, consults...
        self.uploads = SqlUploads(self.pool)  # files agents attach to replies
        self.accounts = SqlAccounts(self.pool)  # console sign-in
        self.secrets = SqlSecrets(self.pool)  # the token key when no key file is set
        self.revocations = SqlRevocations(self.pool)  # revoked tokens and subjects
        self.webhooks = SqlWebhooks(self.pool)  # subscriptions and their deliveries
        self.configuration_log = SqlConfigurationLog(self.pool)  # configuration changes
        # Who routes on this database (PostgreSQL; SQLite is single-node): lease.py.
        self.leases = None if is_sqlite(self.engine) else SqlLeases(self.pool)

    def check(self) -> schema.SchemaStatus:
        return schema.check(self.url)

    def start(self) -> None:
        hand_over_sooner()  # the database threads take the interpreter lock back sooner
        self.pool.start()

    async def stop(self) -> None:
        await self.commit.drain()
        self.pool.stop()
        if self.leases is not None:
            self.leases.close()
        self.engine.dispose()


def accounts_service(storage: Storage, reactor: Any) -> Accounts:
    """Console accounts on this database; password hashes are checked in the reactor's thread
    pool (argon2 is deliberately slow)."""
    return Accounts(storage.accounts, storage.store, reactor, offload=lambda fn, *a: (
        threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *a)),
        revocations=storage.revocations)


def load_token_secret(storage: Storage, reactor: Any) -> Deferred[bytes]:
    """The HS256 token secret kept in this database (made on first use)."""
    return tokens.stored_secret(storage.secrets, reactor.seconds())


class CommandServices:
    """The services an edge's command uses (`EdgeCommandContext`), over one open `Storage`: the
    command line's process runs no router, so no service here applies a change live; a running
    server on the same database does, through its watches. The one place, besides `App`, where
    services are built over the stores."""

    def __init__(self, storage: Storage, reactor: Any) -> None:
        self.storage = storage
        self.reactor = reactor
        # Reports read the log on their own connection, opened only by a command that reads it.
        self.report_events: SqlReportStore | None = None

    def _report_events(self) -> SqlReportStore:
        if self.report_events is None:
            self.report_events = SqlReportStore(self.storage.url, self.reactor)
            self.report_events.start()
        return self.report_events

    async def context(self, token_secret: bool = True) -> EdgeCommandContext:
        """The command's context; `token_secret`: load (or make) the database's token secret."""
        s, reactor = self.storage, self.reactor
        return EdgeCommandContext(
            reactor=reactor,
            accounts=accounts_service(s, reactor),
            token_secret=await load_token_secret(s, reactor) if token_secret else None,
            configuration=Configuration(s.store, reactor, phones=s.phones, codes=s.codes),
            library=Library(s.answers, reactor),
            records=Records(s.store, s.answers, s.codes, s.phones),
            revocations=TokenRevocation(s.revocations, reactor),
            reports=Reports(_Lazy(self._report_events), s.store, reactor),
        )

    def stop(self) -> None:
        if self.report_events is not None:
            self.report_events.stop()


class _Lazy:
    """An object made on first use (its attributes looked up then)."""

    def __init__(self, make: Any) -> None:
        self._make = make

    def __getattr__(self, name: str) -> Any:
        return getattr(self._make(), name)


def default_node(http_port: int) -> str:
    """This node's name when [cluster] node is empty: the host and its HTTP port (one process
    per port, the same name after a restart), or the process id when the port is chosen by the
    system (0)."""
    return f"{socket.gethostname()}:{http_port if http_port else f'pid{os.getpid()}'}"


def offer_ids() -> Callable[[], str]:
    """Offer ids unique across restarts and processes: a random prefix per process and a
    counter (a uuid4 per offer cost 6 us, as much as the routing decision itself)."""
    prefix = uuid.uuid4().hex[:20]
    count = itertools.count(1)
    return lambda: f"{prefix}{next(count):x}"


class App:
    def __init__(self, config: Config, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        # A leader paused inside a routing transaction holds the lease's fence lock: the
        # server ends that transaction before the lease runs out, so a standby can take over.
        self.storage = Storage(config.database.url, reactor,
                               idle_in_transaction=config.cluster.lease_seconds * IDLE_SHARE)
        # Every write passes the history cache on its way (the offers' customer cards); with
        # the cache off ([server] history_cache_customers = 0) writes go straight to the store.
        self.history_cache: HistoryCache | None = None
        self.store = self.storage.store
        if config.server.history_cache_customers > 0:
            self.history_cache = HistoryCache(customers=config.server.history_cache_customers)
            self.store = WatchedStore(self.storage.store, self.history_cache)
        self.router = Router(interruptions(config.routing.interruptions),
                             new_offer_id=offer_ids())
        self.assignment = Assignment(self.router, self.store, reactor)
        self.intake = Intake(self.assignment, self.store, reactor)
        self.sessions = Sessions(self.assignment)
        self.queries = Queries(self.router, self.store)
        self.calls = Calls(self.assignment, self.intake, self.storage.phones)
        # Configuration (agents, queues, calendars, phones, categories): one service for the
        # CLI, supervisors and the API, applied live here; the watch applies what another
        # process (the CLI) changed on the database within a few seconds.
        self.configuration = Configuration(
            self.store, reactor, phones=self.storage.phones, codes=self.storage.codes,
            assignment=self.assignment, intake=self.intake, calls=self.calls)
        self.configuration_watch = ConfigurationWatch(self.storage.configuration_log,
                                                      self.configuration, reactor)
        self.mail = Mail(self.assignment, self.store, reactor, self.intake,
                         uploads=self.storage.uploads)
        # What an agent reads of a task: its thread, notes, files (the console serves it).
        self.conversation = Conversation(self.router, self.store)
        self.history = History(self.store, self.assignment, cache=self.history_cache)
        # Codification: category and spam verdict of each new e-mail before its commit
        # (Mail.codify_with), classifier trained off the reactor; collaboration: notes, consults
        # (their answers taken in by Mail.intercept_with), reminders, redirects.
        self.codification = Codification(
            self.assignment, self.store, self.storage.codes, reactor, self.intake,
            self.configuration, run_in_thread=lambda fn, *a: threads.deferToThreadPool(
                reactor, reactor.getThreadPool(), fn, *a))
        self.mail.codify_with(self.codification)
        self.configuration.reload_categories_with(self.codification)
        self.collaboration = Collaboration(self.assignment, self.store, self.storage.collab,
                                           reactor, self.intake, self.sessions, self.mail)
        self.mail.intercept_with(self.collaboration)
        # Answers: library, KB, response modes, quality review; the automatic mode answers
        # new e-mails after their commit (Mail.answer_with), index rebuilt off the reactor.
        self.library = Library(self.storage.answers, reactor, offload=lambda fn, *a: (
            threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *a)))
        self.review = Review(self.library, self.mail, self.storage.answers, self.store,
                             self.assignment, reactor)
        self.mail.answer_with(self.review)
        # At start: the router rebuilt, timers re-armed, SIP calls lost in a crash settled.
        self.recovery = Recovery(self.assignment, self.calls, self.store)
        # Reports and today's figures read the log on their own connection (report.py).
        self.report_events = SqlReportStore(config.database.url, reactor)
        self.reports = Reports(self.report_events, self.store, reactor)
        self.today = Today(self.report_events, self.store, reactor,
                           checkpoint_seconds=config.reports.checkpoint_seconds)
        self.metrics = Metrics(self.queries, reactor, self.today, self.storage.commit,
                               self.storage.webhooks)
        self.assignment.listen(self.metrics.on_outcome)
        # Supervisors: the live state (today's service level through `today`) and balancing.
        self.supervision = Supervision(self.router, reactor, self.today)
        self.assignment.listen(self.supervision.on_outcome)
        self.balancing = Balancing(self.assignment, self.configuration, self.sessions)
        # The blend's reserve: queues whose calls are at risk keep agents free of e-mail.
        self.blending = Blending(self.router, self.assignment, reactor)
        self.assignment.listen(self.blending.on_outcome)
        # Tasks for the REST API: list, show, create through Intake, cancel, reprioritise.
        self.tasks = Tasks(self.queries, self.store, self.intake, self.sessions,
                           self.assignment, self.conversation)
        # Supervisors' back office (the /supervisor page): library, review, spam, customers.
        self.backoffice = BackOffice(self.library, self.review, self.codification,
                                     Customers(self.store, reactor), self.history)
        # Webhooks: subscriptions (for the REST API), and the deliverer that POSTs committed
        # events to them, signed, retried, dead-lettered (docs/webhooks.md).
        self.webhooks = Webhooks(self.storage.webhooks, reactor)
        self.webhook_poster = HttpPoster(reactor)
        hooks = config.webhooks
        self.deliverer = Deliverer(
            self.storage.webhooks, reactor, self.webhook_poster, poll=hooks.poll_seconds,
            max_attempts=hooks.max_attempts, timeout=hooks.timeout,
            max_in_flight=hooks.max_in_flight, per_subscription=hooks.per_subscription,
            keep_days=hooks.keep_days, on_result=self.metrics.on_webhook)
        # Console accounts (sign-in, the rule for tokens) and the token secret kept in the
        # database (loaded at start: the edges and /report verify with it).
        self.accounts = accounts_service(self.storage, reactor)
        self.token_secret: bytes | None = None
        # Revoked tokens: loaded at start, read again every few seconds (the CLI revokes).
        self.revocation_watch = tokens.RevocationWatch(self.storage.revocations, reactor)
        self.edges: list[tuple[str, Edge]] = []
        self.deposed_reason: str | None = None  # why this node stopped routing, if it did
        self.collector = Collector(reactor, config.server.gc_refreeze_seconds)
        # Several nodes on PostgreSQL: the lease says which one routes (service/leadership.py).
        self.node = config.cluster.node or default_node(config.server.http_port)
        self.leadership: Leadership | None = None
        if self.storage.leases is not None:
            self.leadership = Leadership(self.storage.leases, reactor, self.node,
                                         config.cluster.lease_seconds)
            self.leadership.on_deposed(self._deposed)
        # Mail the SMTP of nodes that do not route held for the router (service/held.py).
        self.held = Held(SqlHeldMail(self.storage.pool), reactor, self.node)
        if self.leadership is not None:  # /metrics: epoch, leader, takeovers, held mail
            self.metrics.show_lease(self.leadership, self.held)
        # Where each node is: a node that does not route passes its agents on to the leader's.
        self.nodes: Nodes | None = None
        if self.leadership is not None:
            self.nodes = Nodes(SqlNodes(self.storage.pool), reactor, self.node,
                               advertised_host(config))

    def start(self) -> Deferred[None]:
        return ensureDeferred(self._start())

    def _check_schema(self) -> None:
        status = self.storage.check()
        if not status.ok:
            raise StaleSchema(status)

    async def _start(self) -> None:
        self._check_schema()
        self.storage.start()
        if self.leadership is not None:
            await self.lead()
        self.token_secret = await load_token_secret(self.storage, self.reactor)
        await self.revocation_watch.start()
        await self.configuration_watch.mark()  # changes after this: applied by the watch
        # The collector's schedule before the state loads: no automatic full pass of the
        # interpreter (each walks the whole heap in one piece: 50-350 ms at 100 k open tasks,
        # in the load's thread or on the reactor) while start-up builds millions of objects;
        # the first refreeze collects and freezes them. Freeze-once (0) freezes at the end.
        early_gc = self.collector.every_seconds > 0
        if early_gc:
            self.collector.start()
        state = await self.store.load_state()
        self.intake.calendars = {
            c.name: BusinessCalendar.from_spec(c.name, c.timezone, c.hours, c.holidays)
            for c in state.calendars
        }
        await self.recovery.restore(state)  # before any edge or /healthz
        await self.codification.start()  # rules loaded; the classifier trains in a thread
        await self.collaboration.start()  # pending reminders re-armed
        await self.calls.start()  # phone accounts and registrations, expiries re-armed
        # Answers, articles, rules in memory; the index is built in a thread meanwhile (5,000
        # answers take seconds): what ranks waits for it, the start does not.
        await self.library.load()
        if not early_gc:
            self.collector.start()  # freeze once what start-up built (collector.py)
        self.report_events.start()
        self.metrics.start()
        # Today's figures so far are folded from the log on the report thread while the rest
        # starts: routing does not wait for them (the live view shows them once read).
        self.supervision.start()
        self.today.start()  # checkpoints of today's figures ([reports] checkpoint_seconds)
        self.blending.start()
        if self.config.webhooks.enabled:
            self.deliverer.start()  # pending deliveries resume; new events fan out
        self.configuration_watch.start()
        log.info("router rebuilt: %d queues, %d agents, %d open tasks",
                 len(state.queues), len(state.agents), len(self.router.tasks))

    async def lead(self) -> int | None:
        """Wait as a standby until this node holds the database's lease (service/leadership.py);
        from then on every routing transaction checks its epoch. None: single-node (SQLite).
        `start` calls it; `serve` calls it first to answer /healthz while it waits."""
        if self.leadership is None:
            return None
        if self.leadership.role == LEADER:
            return self.leadership.epoch
        self._check_schema()  # the lease lives in the schema too
        self.storage.start()
        epoch = await self.leadership.lead()
        assert self.storage.leases is not None
        self.storage.commit.fence_with(
            self.storage.leases.fence(epoch),
            lambda failure: self.leadership.deposed(failure.getErrorMessage()))  # type: ignore[union-attr]
        return epoch

    def _deposed(self, reason: str) -> None:
        """Another node routes now (or may): stop this process at once, before it offers
        anything more; its writes already fail (the fence). `serve` then starts it again as a
        standby, or exits for a supervisor to (docs/operations.md)."""
        self.deposed_reason = reason
        if self.reactor.running:
            self.reactor.stop()

    def people_tokens(self) -> tokens.Verifier:
        """A verifier of people's tokens with the console's keys (its settings read by
        attribute: the runtime imports no edge) and the secret kept in the database."""
        settings = self.config.edges.get(CONSOLE_EDGE)
        if settings is None:
            raise tokens.KeyProblem("no console settings: reports need its token keys")
        return verifier_from(settings, self.token_secret)

    def mount_http(self, site_root: Any) -> None:
        """The runtime's own page: /metrics (its Prometheus registry is wired here); /healthz
        and /report are the admin edge's."""
        site_root.putChild(b"metrics", MetricsPage(self.metrics))

    def build_edges(self, specs: dict[str, EdgeSpec], site_root: Any) -> list[str]:
        """Build every edge whose settings say enabled; returns their names."""
        self.mount_http(site_root)
        context = EdgeContext(
            reactor=self.reactor, intake=self.intake, sessions=self.sessions,
            queries=self.queries, configuration=self.configuration, assignment=self.assignment,
            site_root=site_root, mail=self.mail, history=self.history, calls=self.calls,
            conversation=self.conversation,
            reports=self.reports,
            answers=AnswerServices(self.library, self.review),
            codification=self.codification, collaboration=self.collaboration,
            supervision=self.supervision, balancing=self.balancing,
            backoffice=self.backoffice,
            tasks=self.tasks,
            webhooks=self.webhooks,
            accounts=self.accounts, token_secret=self.token_secret,
            health=Readiness(self.router, self.report_events.ping,
                             role=self.leadership.status if self.leadership else None),
            people_tokens=self.people_tokens,
            held=self.held if self.leadership is not None else None,  # SQLite holds none
        )
        for name, spec in sorted(specs.items()):
            settings = self.config.edges.get(name) or spec.settings()
            if getattr(settings, "enabled", True):
                self.edges.append((name, spec.build(context, settings)))
        return [name for name, _ in self.edges]

    async def start_edges(self) -> None:
        for name, edge in self.edges:
            await maybeDeferred(edge.start)
            log.info("edge %s started", name)

    def stop(self) -> Deferred[None]:
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        for name, edge in reversed(self.edges):  # stop taking work before the core stops
            try:
                await maybeDeferred(edge.stop)
            except Exception:
                log.exception("edge %s did not stop cleanly", name)
        self.revocation_watch.stop()
        self.configuration_watch.stop()
        self.assignment.stop()
        self.codification.stop()
        self.collaboration.stop()
        self.calls.stop()
        self.library.stop()
        self.collector.stop()
        self.metrics.stop()
        self.supervision.stop()
        self.blending.stop()
        await self.today.stop()  # a last checkpoint: the next start reads only what follows
        self.report_events.stop()
        await self.deliverer.stop()  # posts in flight stay pending, sent after a restart
        await self.webhook_poster.close()
        await self.storage.commit.drain()
        if self.leadership is not None:
            await self.leadership.stop()  # a leader gives its lease up: a standby takes over
        await self.storage.stop()
