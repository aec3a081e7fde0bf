"""`switchboard serve`: start the dispatcher on the reactor until SIGINT/SIGTERM.

Refuses to start on a stale schema (and says which command upgrades it). On PostgreSQL it
first waits as a standby (answering /healthz from runtime/standby.py, passing every other HTTP
request, the console's and the CTI's sockets on to the leader: runtime/proxy.py,
dispatcher/tunnel.py) until it holds the database's lease; it publishes where it can be reached
(runtime/peers.py), and once it routes, what its edges serve. The moment it stops routing
(another node took over, or the database stopped confirming its lease) it stops like on
SIGTERM and starts again in the same process (`exec`, same pid and command line), as a
standby; with `[cluster] restart_when_deposed = false` it exits with DEPOSED_EXIT instead,
for a supervisor to restart. Stops cleanly: timers
cancelled, pending commits drained, threads joined. At start it raises the soft descriptor limit
to the hard one, logs it once with the connection budget, and sets the process's connection
limits (dispatcher/net.py) before any listener opens.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.error import CannotListenError

from dispatcher import net
from dispatcher.service.edges import EdgeSpec, StandbyContext
from dispatcher.service.leadership import LEADER
from dispatcher.service.nodes import HTTP, Nodes

from .app import App, StaleSchema
from .config import Config
from .http import HttpLimits, build_site
from .logs import route_twisted_logs
from .peers import NodeHosts, publish
from .proxy import LeaderProxy
from .standby import standby_site

log = logging.getLogger(__name__)


DATABASE_RETRY_SECONDS = 1.0  # a deposed node waiting for its database before it starts again
DEPOSED_EXIT = 75  # EX_TEMPFAIL: another node routes now; restart this one (as a standby)
HTTP_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 5\r\ncontent-length: 0\r\n"
                b"connection: close\r\n\r\n")


def guard_connections(config: Config, reactor: object) -> net.Gate:
    """Descriptors up to the hard limit (logged once), the process's connection limits, and
    no log storm when accept() fails anyway."""
    soft, hard = net.raise_descriptor_limit()
    s = config.server
    gate = net.configure(net.Limits(max_connections=s.max_connections,
                                    per_peer=s.max_connections_per_ip,
                                    header_timeout=s.header_timeout), reactor)
    net.quiet_accept_errors()
    log.info("descriptors: %d (hard limit %d); connection budget %d, %d per source address "
             "and listener", soft, hard, gate.max_connections, gate.per_peer)
    return gate


def listen_http(reactor: object, config: Config, site: object, gate: net.Gate) -> object:
    factory = net.Guarded(site, "http", the_gate=gate, refusal=HTTP_REFUSAL,
                          busy_on_data=False)
    return net.listen_tcp(reactor, config.server.http_port, factory, config.server.host)


def standby_edges(app: App, specs: dict[str, EdgeSpec], reactor: Any) -> list[tuple[str, Any]]:
    """The edges of a node that does not route (`EdgeSpec.standby`), for those enabled."""
    assert app.nodes is not None
    context = StandbyContext(reactor=reactor, held=app.held, nodes=app.nodes)
    built = []
    for name, spec in sorted(specs.items()):
        settings = app.config.edges.get(name) or spec.settings()
        if spec.standby is not None and getattr(settings, "enabled", True):
            edge = spec.standby(context, settings)
            if edge is not None:
                built.append((name, edge))
    return built


async def wait_for_lease(app: App, config: Config, specs: dict[str, EdgeSpec], reactor: Any,
                         gate: net.Gate) -> list[tuple[str, Any]]:
    """PostgreSQL: until this node holds the lease (for ever with role `edge`), answer /healthz
    as a standby and, unless the role is `router`, run the standby edges (their SMTP holds mail
    for the router). Returns those edges, still running: stop them once the node's own edges
    are about to open. A node whose first claim wins (the usual single node, a fresh database,
    a restart after a crash) opens nothing before its own edges: its ports answer once ready."""
    role = config.cluster.role
    leadership = app.leadership
    assert leadership is not None
    if role != "edge":
        leading = ensureDeferred(app.lead())
        if not leading.called:  # (a stale schema fails it at once)
            await leadership.answered()
        if leading.called or leadership.role == LEADER:
            await leading
            return []

    def status() -> dict[str, Any]:
        return {**leadership.status(), "role": "edge"} if role == "edge" else leadership.status()

    nodes = app.nodes
    assert nodes is not None
    proxy = LeaderProxy(reactor, lambda: nodes.leader(HTTP))
    page = listen_http(reactor, config, standby_site(
        status, proxy, HttpLimits.from_server(config.server)), gate)
    edges = [] if role == "router" else standby_edges(app, specs, reactor)
    app.storage.start()
    await publish_quietly(nodes, page.getHost().port, [])
    for name, edge in edges:
        await maybeDeferred(edge.start)
        log.info("edge %s started for the router (holding mail, passing clients on)", name)
    log.info("%s (node %s): /healthz on http://%s:%d/%s", "edge node" if role == "edge"
             else "standby", leadership.node, config.server.host, page.getHost().port,
             "" if role == "edge" else " until this node holds the lease")
    if role == "edge":
        await Deferred()  # never routes: runs until stopped
    await leading
    await page.stopListening()
    return edges


def serve(config: Config, url: str, specs: dict[str, EdgeSpec] | None = None,
          role: str | None = None) -> int:
    """Run until stopped; `specs`: the edges found by entry point (each built if enabled);
    `role`: overrides [cluster] role."""
    from twisted.internet import reactor

    config = dataclasses.replace(config, database=dataclasses.replace(config.database, url=url))
    if role is not None:
        config = dataclasses.replace(config, cluster=dataclasses.replace(config.cluster,
                                                                         role=role))
    app = App(config, reactor)
    if app.leadership is None and config.cluster.role != "all":
        print(f"switchboard: role {config.cluster.role!r} needs PostgreSQL: SQLite is "
              "single-node", file=sys.stderr)
        return 2
    route_twisted_logs()
    run = Run(app, config, specs or {}, reactor, guard_connections(config, reactor))
    # `failed` also gets what start-up raises after the core (a port in use): never run half up.
    reactor.callWhenRunning(lambda: ensureDeferred(run.start()).addErrback(run.failed))
    reactor.callWhenRunning(run.remember_signals)
    reactor.run()
    if app.deposed_reason is not None:
        again = config.cluster.restart_when_deposed and not run.asked_to_stop
        print(f"switchboard: stopped routing: {app.deposed_reason}"
              + ("; starting again as a standby" if again else ""), file=sys.stderr)
        if again:
            wait_for_database(app.storage.engine.url)
            start_again()
    return run.code


class Run:
    """One run of `serve` on the reactor: start (as a standby first on PostgreSQL), or say why
    it could not; `code` is the exit status."""

    def __init__(self, app: App, config: Config, specs: dict[str, EdgeSpec], reactor: Any,
                 gate: net.Gate) -> None:
        self.app, self.config, self.specs, self.reactor, self.gate = (
            app, config, specs, reactor, gate)
        self.code = 0
        self.stopping = False  # SIGTERM may come while starting: then start no further
        self.asked_to_stop = False  # SIGTERM or SIGINT came: a deposed node does not start again
        reactor.addSystemEventTrigger("before", "shutdown", self._stop_requested)

    def remember_signals(self) -> None:
        """Note SIGTERM and SIGINT before the reactor's own handlers (chained) see them: one
        that lands while a deposed leader stops must not be lost to its restart."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)

            def noted(number: int, frame: Any, previous: Any = previous) -> None:
                self.asked_to_stop = True
                if self.code == DEPOSED_EXIT:  # asked to stop: not a deposed exit any more
                    self.code = 0
                if callable(previous):
                    previous(number, frame)

            signal.signal(signum, noted)

    def _stop_requested(self) -> None:
        self.stopping = True

    def _deposed(self, reason: str) -> None:
        if not self.asked_to_stop:
            self.code = DEPOSED_EXIT

    async def start(self) -> None:
        app, config, reactor = self.app, self.config, self.reactor
        held: list[tuple[str, Any]] = []
        if app.leadership is not None:  # PostgreSQL: a standby until this node holds the lease
            app.leadership.on_deposed(self._deposed)
            held = await wait_for_lease(app, config, self.specs, reactor, self.gate)
        if self.stopping:
            return
        await app.start()
        if self.stopping:  # too late for the shutdown trigger: stop what started
            await app.stop()
            return
        reactor.addSystemEventTrigger("before", "shutdown", app.stop)
        for name, edge in held:  # they stood in while the state loaded; ours take over now
            await maybeDeferred(edge.stop)
            log.info("edge %s stopped standing in: this node routes", name)
        site, root = build_site(HttpLimits.from_server(config.server))
        names = app.build_edges(self.specs, root)
        await app.start_edges()
        port = listen_http(reactor, config, site, self.gate)
        if app.nodes is not None:  # the other nodes pass their agents on to this one now
            await publish_quietly(app.nodes, port.getHost().port, [e for _, e in app.edges])
            hosts = NodeHosts(app.nodes, self.gate, reactor)
            hosts.start()
            reactor.addSystemEventTrigger("before", "shutdown", hosts.stop)
        log.info("switchboard serving on http://%s:%d/ (database %s; edges: %s)",
                 config.server.host, port.getHost().port,
                 app.storage.engine.url.render_as_string(hide_password=True),
                 ", ".join(names) or "none")

    def failed(self, failure: Any) -> None:
        if self.stopping:  # stopped while starting: what failed was being stopped
            log.info("stopped while starting: %s", failure.getErrorMessage())
            return
        self.code = 1
        server = self.config.server
        if failure.check(StaleSchema):
            print(f"switchboard: {failure.value}", file=sys.stderr)
        elif failure.check(CannotListenError):  # whichever listener it was (HTTP, an edge's)
            where = failure.value
            print(f"switchboard: cannot listen on {where.interface or server.host}:{where.port}: "
                  f"{where.socketError}", file=sys.stderr)
        elif failure.check(SQLAlchemyError):
            print(f"switchboard: database: {failure.getErrorMessage().splitlines()[0]}",
                  file=sys.stderr)
        else:
            log.error("could not start: %s", failure.getTraceback())
        self.reactor.stop()


async def publish_quietly(nodes: Nodes, http_port: int, edges: list[Any]) -> None:
    """Publish this node's endpoints (runtime/peers.py); a database that fails it now only
    keeps the others from passing agents on to this node: logged, not fatal."""
    try:
        await publish(nodes, http_port, edges)
    except SQLAlchemyError as exc:
        log.warning("could not publish this node's address: %s", _first_line(exc))


def wait_for_database(url: Any, every: float = DATABASE_RETRY_SECONDS) -> None:
    """Block until the database answers: a leader deposed because it was cut off from its
    database starts again only once it can reach it (a start that cannot connect exits)."""
    for signum in (signal.SIGTERM, signal.SIGINT):  # the reactor's handlers are gone with it
        signal.signal(signum, signal.SIG_DFL)
    engine = sa.create_engine(url, poolclass=NullPool, hide_parameters=True)
    told = False
    try:
        while True:
            try:
                with engine.connect():
                    return
            except sa.exc.DBAPIError as exc:
                if not told:
                    print(f"switchboard: waiting for the database: {_first_line(exc)}",
                          file=sys.stderr)
                    told = True
            time.sleep(every)
    finally:
        engine.dispose()


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def start_again() -> None:
    """Replace this process by the same command (a fresh standby: nothing of the deposed
    router's memory survives). Listening sockets are not inherited across exec."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)
