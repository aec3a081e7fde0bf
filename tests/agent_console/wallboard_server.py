"""A dispatcher with its console and wallboard, to drive from a browser test, in its own process
(Playwright's sync API cannot run inside an asyncio loop; the asyncio reactor is installed once
per process).

The service layer on a MemoryStore with today's figures (`reports.Today`), the live state and
the balancing actions (`supervision`), the console edge built by its plugin exactly as the
runtime does, twisted.web on an ephemeral port. Queues: `support` (support >= 5) and `billing`;
agents a1 and a2 in support (signed in), b1 in billing (signed off); the supervisor account
"boss" signs in with a password. `/report` is served as the runtime serves it (supervisor
token in an Authorization header). Prints one JSON line {"http_port", "ws_port", "token"
(supervisor "boss"), "password" (boss's), "agent_token" (a1)}, then takes JSON
commands on stdin, one per line, answering each with one JSON line:
  {"mail": {"queue", "subject"}}  {"call": {"number"}}  {"task": id} -> its state and agent
  {"email": {"queue", "subject", "from"}} -> a message received by the mail service (request
  number, acknowledgement), as the SMTP edge hands it over
  {"queue": {"name", "requires": {skill: level}}}  {"agent": {"id", "name", "skills", "queues",
  "login": bool}}  -> stored and routed by the configuration (and signed in)
"""

from __future__ import annotations

import json
import secrets
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

from admin.report_page import ReportPage  # noqa: E402
from agent_console.auth import load_keys, signer_for  # noqa: E402
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
from dispatcher.service.mail import InboundMail, Mail  # noqa: E402
from dispatcher.service.queries import Queries  # noqa: E402
from dispatcher.service.reports import Reports, Today  # noqa: E402
from dispatcher.service.sessions import Sessions  # noqa: E402
from dispatcher.service.supervision import Balancing, Supervision  # noqa: E402
from dispatcher.service.token_settings import verifier_from  # noqa: E402
from dispatcher.storage.accounts import MemoryAccounts  # noqa: E402
from dispatcher.storage.memory import MemoryStore  # noqa: E402


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, intake: Intake, router: Router, mail: Mail | None = None,
                 configuration: Configuration | None = None,
                 sessions: Sessions | None = None) -> None:
        self.intake = intake
        self.router = router
        self.mail = mail
        self.configuration = configuration
        self.sessions = sessions

    def lineReceived(self, line: bytes) -> None:
        ensureDeferred(self.run(json.loads(line))).addErrback(
            lambda f: self.answer({"error": f.getErrorMessage()}))

    async def run(self, cmd: dict) -> None:
        if "mail" in cmd:
            c = cmd["mail"]
            task = await self.intake.submit(
                Channel.EMAIL, c.get("queue", "support"),
                identity=email_identity(c.get("address", "ann@example.org")),
                customer_name="Ann Example",
                attributes={"subject": c.get("subject", "Hello"), "text": "Hello."})
            self.answer({"task_id": task.id})
        elif "email" in cmd:
            c = cmd["email"]
            sender = c.get("from", "ann@example.org")
            got = await self.mail.receive(InboundMail(
                raw=b"raw", queue=c.get("queue", "support"), from_address=sender,
                envelope_from=sender, from_name=c.get("name", ""),
                subject=c.get("subject", "Hello"), text=c.get("text", "Hello."),
                message_id=f"{secrets.token_hex(8)}@example.org"))
            self.answer({"task_id": got.task_id, "request": got.request})
        elif "queue" in cmd:
            c = cmd["queue"]
            await self.configuration.change_queue(
                Queue(c["name"], requirement=c.get("requires", {})))
            self.answer({"ok": True})
        elif "agent" in cmd:
            c = cmd["agent"]
            await self.configuration.change_agent(Agent(c["id"], name=c.get("name", ""),
                                                        skills=c.get("skills", {}),
                                                        queues=set(c.get("queues", ()))))
            if c.get("login"):
                await self.sessions.login(c["id"])
            self.answer({"ok": True})
        elif "call" in cmd:
            number = cmd["call"].get("number", "+3225550100")
            task = await self.intake.submit(
                Channel.PHONE, cmd["call"].get("queue", "support"),
                identity=phone_identity(number), attributes={"caller": number})
            self.answer({"task_id": task.id})
        else:
            task = self.router.tasks.get(cmd["task"])
            self.answer({"state": task.state.value if task else "closed",
                         "agent_id": task.agent_id if task else None,
                         "queue": task.queue if task else None})

    def answer(self, obj: dict) -> None:
        self.transport.write(json.dumps(obj).encode() + b"\n")


async def main() -> None:
    store = MemoryStore()
    router = Router()
    assignment = Assignment(router, store, reactor)
    intake, sessions = Intake(assignment, store, reactor), Sessions(assignment)
    queries = Queries(router, store)
    configuration = Configuration(store, assignment.clock, assignment=assignment)
    history = History(store, assignment)
    supervision = Supervision(router, reactor, Today(store, store, reactor))
    assignment.listen(supervision.on_outcome)
    balancing = Balancing(assignment, configuration, sessions)
    await configuration.change_queue(Queue("support", requirement={"support": 5}))
    await configuration.change_queue(Queue("billing"))
    await configuration.change_agent(Agent("a1", name="Alex Martin", skills={"support": 7},
                                 queues={"support"}))
    await configuration.change_agent(Agent("a2", name="Bea Lind", skills={"support": 6},
                                 queues={"support"}))
    await configuration.change_agent(Agent("b1", name="Chris Berg", queues={"billing"}))
    await sessions.login("a1")
    await sessions.login("a2")
    await supervision.start()
    accounts = Accounts(MemoryAccounts(), store, reactor)
    password = "wallboard-" + secrets.token_urlsafe(8)
    await accounts.set("boss", "supervisor", "Boss", password)  # its token needs the account
    root = Resource()
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    http_port = port.getHost().port
    secret = Path(tempfile.mkdtemp()) / "secret"
    secret.write_text("wallboard-test-secret-" + "x" * 40)
    settings = EDGE.settings(port=0, jwt_secret_file=str(secret),
                             allowed_origins=f"http://127.0.0.1:{http_port}")
    ctx = EdgeContext(reactor=reactor, intake=intake, sessions=sessions, queries=queries,
                      configuration=configuration, assignment=assignment, site_root=root,
                      history=history,
                      supervision=supervision, balancing=balancing, accounts=accounts)
    console = EDGE.build(ctx, settings)
    await console.start()
    signer = signer_for(settings, load_keys(settings))
    root.putChild(b"report", ReportPage(Reports(store, store, reactor),
                                        lambda: verifier_from(settings)))
    mail = Mail(assignment, store, reactor, intake)
    stdio.StandardIO(Commands(intake, router, mail, configuration, sessions))
    print(json.dumps({"http_port": http_port, "ws_port": console.server.port,
                      "token": signer.issue("boss", "supervisor", 3600), "password": password,
                      "agent_token": signer.issue("a1", "agent", 3600)}), flush=True)


def failed(f):
    print(json.dumps({"error": f.getTraceback()}), flush=True)
    reactor.stop()


reactor.callWhenRunning(lambda: ensureDeferred(main()).addErrback(failed))
reactor.run()
sys.exit(0)
