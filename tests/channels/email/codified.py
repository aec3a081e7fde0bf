"""A dispatcher with the e-mail edge, codification (spam scoring, categories) and the web
form, in a process of its own, for the tests that need a real reactor and real peers (spamd,
smtplib, an HTTP client).

    python -m tests.channels.email.codified <database url> <settings json>

Builds what the runtime builds for these parts (SQL stores on a thread pool with group commit,
router, services, `Mail` with `Codification` and `Collaboration` hooked in, the edge through
`EDGE.build` with an HTTP site), queues `support` and `sales`, then prints
`READY <smtp port> <http port>` and runs until SIGTERM.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
READY_TIMEOUT = 30.0


@dataclass
class Server:
    proc: subprocess.Popen
    smtp_port: int
    http_port: int
    url: str

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start(url: str, **settings: Any) -> Server:
    settings.setdefault("smtp_port", 0)
    settings.setdefault("recipients", "support@example.com=support,sales@example.com=sales")
    settings.setdefault("hostname", "mx.example.com")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.channels.email.codified", url, json.dumps(settings)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("READY"):
                _, smtp, http = line.split()
                return Server(proc, int(smtp), int(http), url)
            if not line:
                break
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"the codified e-mail server did not start (rc {proc.poll()})")


def main(url: str, settings_json: str) -> None:
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import defer, reactor, threads
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from channels.email.config import EmailSettings
    from channels.email.plugin import EDGE
    from dispatcher.domain.queues import Queue
    from dispatcher.domain.routing import Router
    from dispatcher.service.assignment import Assignment
    from dispatcher.service.codification import Codification
    from dispatcher.service.collaboration import Collaboration
    from dispatcher.service.configuration import Configuration
    from dispatcher.service.edges import EdgeContext
    from dispatcher.service.intake import Intake
    from dispatcher.service.mail import Mail
    from dispatcher.service.queries import Queries
    from dispatcher.service.sessions import Sessions
    from dispatcher.storage import schema
    from dispatcher.storage.codification import SqlCodificationStore, SqlCollaborationStore
    from dispatcher.storage.commit import GroupCommit
    from dispatcher.storage.engine import make_engine
    from dispatcher.storage.pool import Pool
    from dispatcher.storage.sql import SqlStore

    schema.upgrade(url)
    settings = EmailSettings(**json.loads(settings_json))
    engine = make_engine(url)
    pool = Pool(engine, reactor)
    commit = GroupCommit(pool, reactor)
    store = SqlStore(pool, commit)
    router = Router()
    assignment = Assignment(router, store, reactor)
    intake = Intake(assignment, store, reactor)
    configuration = Configuration(store, assignment.clock, assignment=assignment)
    sessions = Sessions(assignment)
    mail = Mail(assignment, store, reactor, intake)
    codification = Codification(
        assignment, store, SqlCodificationStore(pool, commit), reactor, intake, configuration,
        run_in_thread=lambda fn, *a: threads.deferToThread(fn, *a))
    collaboration = Collaboration(assignment, store, SqlCollaborationStore(pool, commit),
                                  reactor, intake, sessions, mail)
    mail.codify_with(codification)
    mail.intercept_with(collaboration)
    root = Resource()
    context = EdgeContext(reactor=reactor, intake=intake, sessions=sessions,
                          queries=Queries(router, store), configuration=configuration,
                          assignment=assignment,
                          site_root=root, mail=mail, codification=codification,
                          collaboration=collaboration)
    edge = EDGE.build(context, settings)

    async def begin() -> None:
        pool.start()
        await assignment.restore(await store.load_state())
        for name in ("support", "sales"):
            if name not in router.queues:
                await configuration.change_queue(Queue(name, deadline_rule="sliding 8h"))
        await codification.start()
        await collaboration.start()
        edge.start()
        http = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        print("READY", edge.port.getHost().port, http.getHost().port, flush=True)

    def failed(f):
        print("FAILED", f.getTraceback(), file=sys.stderr, flush=True)
        reactor.stop()

    async def end() -> None:
        await edge.stop()
        codification.stop()
        collaboration.stop()
        assignment.stop()
        await commit.drain()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(begin()).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.ensureDeferred(end()))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
