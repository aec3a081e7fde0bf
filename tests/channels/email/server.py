"""A dispatcher with the e-mail edge, in a process of its own, for the tests and the benchmark
that need real sockets (smtplib, swaks, the chasquid dialogs, a relay sink, SIGKILL).

    python -m tests.channels.email.server <database url> <settings json> [--fenced]

Builds what the runtime builds (store on a thread pool with group commit, as many batches in
flight as the runtime's; router, services, `Mail`, the edge through its `EDGE.build`), with
the queues `support` and `sales`, then prints `READY <smtp port>` and runs until SIGTERM.
`--fenced` (PostgreSQL): it first claims the router's lease and commits behind its fence, as
`serve` does (bench/smtp.py); a node deposed meanwhile stops.
Lighter to start than `switchboard serve` (which test_durability.py runs), and it lets a test
pass any EmailSettings at once.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def group_commit(pool: Any, reactor: Any, engine: Any) -> Any:
    """The group commit as the runtime makes it (runtime/app.py): as many batches in flight as
    its store allows (2 on PostgreSQL), so that the benchmark measures what `serve` runs."""
    from dispatcher.storage.commit import POSTGRES_IN_FLIGHT, SQLITE_IN_FLIGHT, GroupCommit
    from dispatcher.storage.engine import is_sqlite

    in_flight = SQLITE_IN_FLIGHT if is_sqlite(engine) else POSTGRES_IN_FLIGHT
    return GroupCommit(pool, reactor, in_flight)


FENCED = "--fenced"
LEASE_SECONDS = 3600.0  # held for the run, never renewed: the fence checks the epoch only


async def hold_lease(pool: Any, commit: Any, reactor: Any) -> Any:
    """Claim the router's lease (PostgreSQL) and put group commit behind its fence; the leases
    (their session lock is let go at the end). Another node holding it is an error."""
    import os

    from dispatcher.storage.lease import SqlLeases

    leases = SqlLeases(pool)
    claim = await leases.claim(f"email-server-{os.getpid()}", LEASE_SECONDS)
    if not claim.won:
        leases.close()
        raise RuntimeError(f"node {claim.lease.holder} holds the router's lease")

    def deposed(failure: Any) -> None:
        print("DEPOSED", failure.getErrorMessage(), file=sys.stderr, flush=True)
        reactor.stop()

    commit.fence_with(leases.fence(claim.lease.epoch), deposed)
    return leases


def main(url: str, settings_json: str, fenced: bool = False) -> None:
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import defer, reactor
    from twisted.web.resource import Resource

    from channels.email.config import EmailSettings
    from channels.email.plugin import EDGE
    from dispatcher.domain.queues import Queue
    from dispatcher.domain.routing import Router
    from dispatcher.service.assignment import Assignment
    from dispatcher.service.configuration import Configuration
    from dispatcher.service.edges import EdgeContext
    from dispatcher.service.intake import Intake
    from dispatcher.service.mail import Mail
    from dispatcher.service.queries import Queries
    from dispatcher.service.sessions import Sessions
    from dispatcher.storage import schema
    from dispatcher.storage.engine import is_sqlite, make_engine
    from dispatcher.storage.pool import Pool, hand_over_sooner
    from dispatcher.storage.sql import SqlStore

    schema.upgrade(url)
    settings = EmailSettings(**json.loads(settings_json))
    engine = make_engine(url)
    pool = Pool(engine, reactor)
    commit = group_commit(pool, reactor, engine)
    store = SqlStore(pool, commit)
    router = Router()
    assignment = Assignment(router, store, reactor)
    intake = Intake(assignment, store, reactor)
    configuration = Configuration(store, assignment.clock, assignment=assignment)
    mail = Mail(assignment, store, reactor, intake)
    context = EdgeContext(reactor=reactor, intake=intake, sessions=Sessions(assignment),
                          queries=Queries(router, store), configuration=configuration,
                          assignment=assignment,
                          site_root=Resource(), mail=mail)  # no HTTP listener: pages unseen
    edge = EDGE.build(context, settings)

    held: list[Any] = []

    async def start() -> None:
        hand_over_sooner()  # as serve's Storage.start
        pool.start()
        if fenced and not is_sqlite(engine):
            held.append(await hold_lease(pool, commit, reactor))
        await assignment.restore(await store.load_state())
        for name in ("support", "sales"):
            if name not in router.queues:
                await configuration.change_queue(Queue(name, deadline_rule="sliding 8h"))
        edge.start()
        print("READY", edge.port.getHost().port, flush=True)

    def failed(f):
        print("FAILED", f.getTraceback(), file=sys.stderr, flush=True)
        reactor.stop()

    async def stop() -> None:
        await edge.stop()
        assignment.stop()
        await commit.drain()
        for leases in held:
            leases.close()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown",
                                  lambda: defer.ensureDeferred(stop()))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], fenced=FENCED in sys.argv[3:])
