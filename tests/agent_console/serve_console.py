"""A console to drive from a browser test, in its own process (Playwright's sync API cannot run
inside an asyncio loop, and the asyncio reactor is installed once per process).

The service layer on a MemoryStore, the console edge built by its plugin exactly as the runtime
does, twisted.web on an ephemeral port. Prints one JSON line {"http_port", "ws_port", "token"},
then takes JSON commands on stdin, one per line, answering each with one JSON line:
  {"mail": {"address", "name", "subject", "text"}}  {"call": {"number", "name", "source"?}}
Seeds a customer history first: an answered call and an e-mail, both completed, a day ago.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from twisted.internet import asyncioreactor

asyncioreactor.install()

from twisted.internet import reactor, stdio  # noqa: E402
from twisted.internet.defer import ensureDeferred  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402
from twisted.web.server import Site  # noqa: E402

from agent_console.plugin import EDGE  # noqa: E402
from dispatcher.domain.agents import Agent  # noqa: E402
from dispatcher.domain.queues import Queue  # noqa: E402
from dispatcher.domain.routing import Router  # noqa: E402
from dispatcher.domain.tasks import Channel  # noqa: E402
from dispatcher.service.accounts import Accounts  # noqa: E402
from dispatcher.service.assignment import Assignment  # noqa: E402
from dispatcher.service.configuration import Configuration  # noqa: E402
from dispatcher.service.edges import EdgeContext  # noqa: E402
from dispatcher.service.history import History  # noqa: E402
from dispatcher.service.intake import Intake, email_identity, phone_identity  # noqa: E402
from dispatcher.service.queries import Queries  # noqa: E402
from dispatcher.service.sessions import Sessions  # noqa: E402
from dispatcher.storage.accounts import MemoryAccounts  # noqa: E402
from dispatcher.storage.memory import MemoryStore  # noqa: E402

DAY = 86400.0


class Shifted:
    """The reactor's clock, optionally a day behind (to seed yesterday's history)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def seconds(self) -> float:
        return reactor.seconds() - self.offset

    def callLater(self, *a, **kw):
        return reactor.callLater(*a, **kw)


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    def lineReceived(self, line: bytes) -> None:
        ensureDeferred(self.run(json.loads(line))).addErrback(
            lambda f: self.answer({"error": f.getErrorMessage()}))

    async def run(self, cmd: dict) -> None:
        if "mail" in cmd:
            c = cmd["mail"]
            task = await self.intake.submit(
                Channel.EMAIL, "support", identity=email_identity(c["address"]),
                customer_name=c.get("name", ""),
                attributes={"subject": c["subject"], "text": c["text"], "from": c["address"]})
        else:
            c = cmd["call"]
            attributes = {"caller": c["number"]}
            if "source" in c:  # "sip": rings the agent's phone; "cti": a PBX's call
                attributes["source"] = c["source"]
            task = await self.intake.submit(
                Channel.PHONE, "support", identity=phone_identity(c["number"]),
                customer_name=c.get("name", ""), attributes=attributes)
        self.answer({"task_id": task.id, "customer_id": task.customer_id})

    def answer(self, obj: dict) -> None:
        self.transport.write(json.dumps(obj).encode() + b"\n")


async def seed(clock: Shifted, intake, sessions, configuration, history) -> None:
    clock.offset = DAY
    await configuration.change_agent(Agent("a9", name="Sam", skills={"support": 8},
                                           queues={"support"}))
    await sessions.login("a9")
    mail = await intake.submit(
        Channel.EMAIL, "support", identity=email_identity("ann@example.org"),
        customer_name="Ann Example",
        attributes={"subject": "Invoice 2026-114 is wrong",
                    "text": "Hello,\nthe invoice charges me twice for March.\nRegards, Ann"})
    offer = sessions.router.tasks[mail.id].offer_id
    await sessions.accept("a9", offer)
    await sessions.complete("a9", mail.id, "solved")
    call = await intake.submit(Channel.PHONE, "support", identity=phone_identity("+3225550100"),
                               customer_name="Ann Example", attributes={"caller": "+3225550100"})
    await sessions.accept("a9", sessions.router.tasks[call.id].offer_id)
    clock.offset = DAY - 222
    await sessions.wrap_up("a9", call.id)
    await sessions.complete("a9", call.id, "refund_promised")
    await sessions.logout("a9")
    # The same person: the supervisor merged her phone number into her e-mail customer.
    await history.merge(mail.customer_id, call.customer_id, "sup1")
    clock.offset = 0.0


async def main() -> None:
    clock = Shifted()
    store = MemoryStore()
    router = Router()
    assignment = Assignment(router, store, clock)
    intake, sessions = Intake(assignment, store, clock), Sessions(assignment)
    queries = Queries(router, store)
    configuration = Configuration(store, assignment.clock, assignment=assignment)
    history = History(store, assignment)
    await configuration.change_queue(Queue("support", requirement={"support": 5}))
    await configuration.change_agent(Agent("a1", name="Alex Martin", skills={"support": 7},
                                 queues={"support"}))
    await seed(clock, intake, sessions, configuration, history)
    root = Resource()
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    http_port = port.getHost().port
    secret = Path(tempfile.mkdtemp()) / "secret"
    secret.write_text("browser-test-secret-" + "x" * 40)
    settings = EDGE.settings(port=0, jwt_secret_file=str(secret),
                             allowed_origins=f"http://127.0.0.1:{http_port}")
    ctx = EdgeContext(reactor, intake, sessions, queries, configuration, assignment, root,
                      history=history, accounts=Accounts(MemoryAccounts(), store, reactor))
    console = EDGE.build(ctx, settings)
    await console.start()
    from agent_console.auth import load_keys, signer_for

    token = signer_for(settings, load_keys(settings)).issue("a1", "agent", 3600)
    stdio.StandardIO(Commands(intake))
    print(json.dumps({"http_port": http_port, "ws_port": console.server.port, "token": token}),
          flush=True)


def started(_):
    return None


def failed(f):
    print(json.dumps({"error": f.getTraceback()}), flush=True)
    reactor.stop()


reactor.callWhenRunning(lambda: ensureDeferred(main()).addCallbacks(started, failed))
reactor.run()
sys.exit(0)
