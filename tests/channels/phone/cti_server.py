"""The real dispatcher (the runtime's `App`: SQL store, group commit, router, `Calls`) with the
agent console and the CTI API, in a process of its own, for the CTI tests.

    python -m tests.channels.phone.cti_server <database url> <spec json>

The spec: {"secret_file", "cti": {CtiSettings fields}, "queues": [{"name", "offer_timeout",
"wrap_up_seconds"}], "agents": [{"id", "extension", "queues"}], "phone_edge": false}. Seeds the
queues and the agents (offline: their consoles sign them in) with CTI-only phone accounts (an
extension, no SIP user), starts the console (its plugin's `EDGE.build`) and the CTI on the
runtime's HTTP site — by `build_cti`, or with "phone_edge": true inside the phone edge (its
`EDGE.build` with `cti_enabled`, SIP on free ports, as a deployment runs it) — prints
`READY {"http_port", "console_port", "cti_port"}`, then one `EVENT <json>` line per committed
event, and runs until SIGTERM.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import fields


def main(url: str, spec_json: str) -> None:
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import defer, reactor

    from agent_console.config import ConsoleSettings
    from agent_console.plugin import EDGE as CONSOLE
    from channels.phone.config import PhoneSettings
    from channels.phone.cti import CtiSettings, build_cti
    from channels.phone.plugin import EDGE as PHONE
    from dispatcher.domain.agents import Agent
    from dispatcher.domain.queues import Queue
    from dispatcher.domain.tasks import Channel
    from dispatcher.runtime.app import App
    from dispatcher.runtime.config import Config, DatabaseConfig, LogConfig
    from dispatcher.runtime.http import build_site
    from dispatcher.service.calls import make_account
    from dispatcher.service.edges import EdgeSpec
    from dispatcher.storage import schema

    spec = json.loads(spec_json)
    logging.basicConfig(level=spec.get("log", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    console = ConsoleSettings(port=0, jwt_secret_file=spec["secret_file"])
    cti = CtiSettings(**{"port": 0, "jwt_secret_file": spec["secret_file"],
                         **spec.get("cti", {})})
    specs = {"console": CONSOLE, "cti": EdgeSpec(name="cti", settings=CtiSettings,
                                                 build=build_cti)}
    edge_settings = {"console": console, "cti": cti}
    if spec.get("phone_edge"):
        specs = {"console": CONSOLE, "phone": PHONE}
        edge_settings = {"console": console, "phone": PhoneSettings(
            enabled=True, udp_port=0, tcp_port=-1, cti_enabled=True,
            sip_enabled=spec.get("sip", True),
            **{f"cti_{f.name}": getattr(cti, f.name) for f in fields(CtiSettings)
               if f.name not in ("enabled", "require_devices")})}
    if spec.get("api"):  # the REST API too (POST /api/v1/callbacks: test_cti_callbacks.py)
        from api.config import ApiSettings
        from api.plugin import EDGE as API

        specs = {**specs, "api": API}
        edge_settings = {**edge_settings, "api": ApiSettings(
            jwt_secret_file=spec["secret_file"], rate_limit_per_second=0)}
    schema.upgrade(url)
    config = Config(database=DatabaseConfig(url), log=LogConfig(level="INFO"),
                    edges=edge_settings)
    app = App(config, reactor)

    def heard(outcome) -> None:
        for e in outcome.events:
            print("EVENT", json.dumps({"kind": e.kind, "task_id": e.task_id,
                                       "agent_id": e.agent_id, "data": dict(e.data)},
                                      default=str), flush=True)

    async def start() -> None:
        await app.start()
        app.assignment.listen(heard)
        for q in spec.get("queues", [{"name": "support"}]):
            await app.configuration.change_queue(Queue(
                q["name"], wrap_up_seconds=q.get("wrap_up_seconds", 60.0),
                offer_timeout={Channel.PHONE: q.get("offer_timeout", 20.0),
                               Channel.EMAIL: 60.0}, expression=q.get("expression", "")))
        for a in spec.get("agents", []):
            await app.configuration.change_agent(Agent(a["id"], a["id"].title(),
                                                       a.get("skills", {}),
                                                       set(a.get("queues", ["support"])),
                                                       attributes=a.get("attributes", {})))
            await app.storage.phones.put_phone_account(
                make_account(a["id"], None, None, extension=a["extension"]))
        await app.calls.start()  # reads the accounts just stored
        site, root = build_site()
        app.build_edges(specs, root)
        await app.start_edges()
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        edges = dict(app.edges)
        cti_edge = edges["phone"].cti if "phone" in edges else edges["cti"]
        print("READY", json.dumps({"parts": getattr(edges.get("phone"), "parts", ["cti"]),
                                   "http_port": port.getHost().port,
                                   "console_port": edges["console"].server.port,
                                   "cti_port": cti_edge.port}), flush=True)

    def failed(f):
        print("FAILED", f.getTraceback(), file=sys.stderr, flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown", app.stop)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
