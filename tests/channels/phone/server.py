"""The real dispatcher (the runtime's `App`: SQL store, group commit, router, `Calls`) with the
phone edge, in a process of its own, for the tests and the benchmark that drive it with sipp.

    python -m tests.channels.phone.server <database url> <spec json>

The spec: {"settings": {PhoneSettings fields}, "queues": [{"name", "wrap_up_seconds",
"offer_timeout"}], "agents": [{"id", "user", "password", "skills", "queues", "extension"}]},
and optionally "http_port" with "secret_file" (the HS256 secret of its tokens): the REST API on
that port too (the callback tests' `POST /api/v1/callbacks`). Seeds the queues, the agents
(available) and their phone accounts, starts the phone edge through its `EDGE.build`, prints
`READY <udp port> <tcp port>`, then one `EVENT <json>` line per committed event (what the tests
wait on), and runs until SIGTERM.
"""

from __future__ import annotations

import json
import logging
import sys


def main(url: str, spec_json: str) -> None:
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import defer, reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from api.config import ApiSettings
    from api.plugin import EDGE as API
    from channels.phone.config import PhoneSettings
    from channels.phone.plugin import EDGE as PHONE
    from dispatcher.domain.agents import Agent, Presence
    from dispatcher.domain.queues import Queue
    from dispatcher.domain.tasks import Channel
    from dispatcher.runtime.app import App
    from dispatcher.runtime.config import Config, DatabaseConfig, LogConfig
    from dispatcher.service.calls import make_account
    from dispatcher.storage import schema

    spec = json.loads(spec_json)
    logging.basicConfig(level=spec.get("log", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = PhoneSettings(**{"enabled": True, **spec.get("settings", {})})
    edges: dict = {"phone": settings}
    specs: dict = {"phone": PHONE}
    if "http_port" in spec:
        edges["api"] = ApiSettings(jwt_secret_file=spec["secret_file"], rate_limit_per_second=0)
        specs["api"] = API
    schema.upgrade(url)
    config = Config(database=DatabaseConfig(url), log=LogConfig(level="INFO"), edges=edges)
    app = App(config, reactor)
    quiet = spec.get("quiet", False)

    def heard(outcome) -> None:
        if quiet:
            return
        for e in outcome.events:
            print("EVENT", json.dumps({"kind": e.kind, "task_id": e.task_id,
                                       "agent_id": e.agent_id, "data": dict(e.data)},
                                      default=str), flush=True)

    async def start() -> None:
        await app.start()
        app.assignment.listen(heard)
        for q in spec.get("queues", [{"name": "support"}]):
            await app.configuration.change_queue(Queue(
                q["name"], wrap_up_seconds=q.get("wrap_up_seconds", 1.0),
                offer_timeout={Channel.PHONE: q.get("offer_timeout", 20.0),
                               Channel.EMAIL: 60.0}))
        for a in spec.get("agents", []):
            await app.configuration.change_agent(Agent(a["id"], a["id"], a.get("skills", {}),
                                             set(a.get("queues", ["support"]))))
            await app.storage.phones.put_phone_account(
                make_account(a["id"], a.get("user"), a.get("password"), settings.realm,
                             extension=a.get("extension")))
        await app.calls.start()  # reads the accounts just stored
        for a in spec.get("agents", []):
            await app.sessions.set_status(a["id"], Presence.AVAILABLE)
        root = Resource()
        app.build_edges(specs, root)
        await app.start_edges()
        if "http_port" in spec:
            reactor.listenTCP(spec["http_port"], Site(root), interface="127.0.0.1")
        endpoint = dict(app.edges)["phone"].endpoint
        print("READY", endpoint.udp_port, endpoint.tcp_port, flush=True)

    def failed(f):
        print("FAILED", f.getTraceback(), file=sys.stderr, flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown", app.stop)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
