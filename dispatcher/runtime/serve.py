"""`switchboard serve`: start the dispatcher on the reactor until SIGINT/SIGTERM.

Refuses to start on a stale schema (and says which command upgrades it); stops cleanly: timers
cancelled, pending commits drained, threads joined.
"""

from __future__ import annotations

import dataclasses
import logging
import sys

from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.defer import ensureDeferred
from twisted.internet.error import CannotListenError

from dispatcher.service.edges import EdgeSpec

from .app import App, NotLeader, StaleSchema
from .config import Config
from .http import build_site
from .logs import route_twisted_logs

log = logging.getLogger(__name__)


def serve(config: Config, url: str, specs: dict[str, EdgeSpec] | None = None) -> int:
    """Run until stopped; `specs`: the edges found by entry point (each built if enabled)."""
    from twisted.internet import reactor

    config = dataclasses.replace(config, database=dataclasses.replace(config.database, url=url))
    app = App(config, reactor)
    status = {"code": 0}
    route_twisted_logs()

    async def start() -> None:
        await app.start()
        reactor.addSystemEventTrigger("before", "shutdown", app.stop)
        site, root = build_site(app.router)
        names = app.build_edges(specs or {}, root)
        await app.start_edges()
        port = reactor.listenTCP(config.server.http_port, site, interface=config.server.host)
        log.info("switchboard serving on http://%s:%d/ (database %s; edges: %s)",
                 config.server.host, port.getHost().port,
                 app.storage.engine.url.render_as_string(hide_password=True),
                 ", ".join(names) or "none")

    def failed(failure):
        status["code"] = 1
        if failure.check(StaleSchema, NotLeader):
            print(f"switchboard: {failure.value}", file=sys.stderr)
        elif failure.check(CannotListenError):
            print(f"switchboard: cannot listen on {config.server.host}:"
                  f"{config.server.http_port}: {failure.value.socketError}", file=sys.stderr)
        elif failure.check(SQLAlchemyError):
            print(f"switchboard: database: {failure.getErrorMessage().splitlines()[0]}",
                  file=sys.stderr)
        else:
            log.error("could not start: %s", failure.getTraceback())
        reactor.stop()

    # `failed` also gets what start-up raises after the core (a port in use): never run half up.
    reactor.callWhenRunning(lambda: ensureDeferred(start()).addErrback(failed))
    reactor.run()
    return status["code"]
