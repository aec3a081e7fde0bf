"""`switchboard demo`: a working contact centre in one command, on the embedded SQLite default.

Creates (or reuses) a SQLite database under `--dir`, upgrades its schema, seeds sample queues,
agents and a business calendar, starts the real dispatcher, then plays customers (a Poisson
stream of e-mails and calls from a pool of returning customers) and robot agents (who accept
after a moment, handle the task, wrap up calls, complete). Every few seconds it prints the live
queue figures, and it says what to open and which commands to try. The desk of the agent `you`
is for a person: its account gets a random password, printed once at start, and so does the
supervisor account `boss`.
"""

from __future__ import annotations

import logging
import random
import secrets
from pathlib import Path

from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.deadlines import BusinessCalendar
from dispatcher.domain.queues import EscalationStep, Queue
from dispatcher.domain.routing import Outcome
from dispatcher.domain.tasks import Channel
from dispatcher.service.edges import EdgeSpec
from dispatcher.service.intake import email_identity, phone_identity
from dispatcher.service.ports import Calendar
from dispatcher.service.roster import Roster
from dispatcher.storage import schema

from .app import App
from .config import Config, DatabaseConfig, LogConfig
from .http import build_site

log = logging.getLogger(__name__)

REPORT_EVERY = 3.0  # seconds between two printed figures
ACCEPT_DELAY = (0.5, 2.5)  # robot agents take a moment to accept
HANDLE_SECONDS = {Channel.PHONE: (4.0, 14.0), Channel.EMAIL: (3.0, 10.0)}
PHONE_WRAP_UP = 3.0
CUSTOMERS = 40
SUPERVISOR = "boss"  # the demo's supervisor account
PASSWORD_BYTES = 9  # 12 characters, printed once
EDGES_OFF_IN_DEMO = frozenset({"phone"})

DEMO_CALENDAR = Calendar(
    name="office", timezone="Europe/Paris",
    hours={d: [["08:00", "20:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    holidays=("2026-12-25", "2027-01-01"),
)
DEMO_QUEUES = (
    Queue("support", requirement={"support": 3},
          steps=(EscalationStep(20.0, {"support": 1}),), priority=0, wrap_up_seconds=PHONE_WRAP_UP,
          calendar="office", deadline_rule="sliding 8h"),
    Queue("sales", requirement={"sales": 2}, priority=5, wrap_up_seconds=PHONE_WRAP_UP,
          calendar="office", deadline_rule="scheduled 12:00 +1"),
    Queue("billing", requirement={"billing": 4, "french": 2},
          steps=(EscalationStep(30.0, {"french": None}),), wrap_up_seconds=PHONE_WRAP_UP,
          calendar="office", deadline_rule="sliding 24h"),
)
DEMO_AGENTS = (
    Agent("alice", "Alice Martin", {"support": 8, "french": 9, "billing": 5},
          {"support", "billing"}),
    Agent("bruno", "Bruno Costa", {"support": 5, "sales": 7}, {"support", "sales"}),
    Agent("chloe", "Chloé Petit", {"sales": 9, "french": 8}, {"sales", "billing"}),
    Agent("dmitri", "Dmitri Ivanov", {"support": 2, "billing": 7}, {"support", "billing"}),
    Agent("emma", "Emma Wilson", {"support": 6, "sales": 3}, {"support", "sales"}),
    Agent("farid", "Farid Haddad", {"billing": 6, "french": 6, "support": 4},
          {"billing", "support"}),
)
# A desk for a person: no robot plays it; sign in at the console to take its offers.
HUMAN = Agent("you", "You", {"support": 7, "sales": 5, "billing": 5, "french": 5},
              {"support", "sales", "billing"})


class _Play:
    """The customers and the robot agents of the demo."""

    def __init__(self, app: App, reactor, rate_per_minute: float, seed: int) -> None:
        self.app, self.reactor = app, reactor
        self.rng = random.Random(seed)
        self.rate = rate_per_minute / 60.0
        self.done = 0
        app.assignment.listen(self._heard)

    def start(self) -> None:
        self.reactor.callLater(self.rng.expovariate(self.rate), self._arrive)
        self.reactor.callLater(REPORT_EVERY, self._report)

    def _arrive(self) -> None:
        n = self.rng.randrange(CUSTOMERS)
        queue = self.rng.choice([q.name for q in DEMO_QUEUES])
        if self.rng.random() < 0.5:
            d = self.app.intake.submit(Channel.PHONE, queue, phone_identity(f"+3315550{n:04d}"),
                                       f"Caller {n}")
        else:
            d = self.app.intake.submit(Channel.EMAIL, queue,
                                       email_identity(f"customer{n}@example.org"), f"Customer {n}",
                                       attributes={"subject": f"Question #{self.rng.randrange(999)}"})
        d.addErrback(lambda f: log.error("demo intake failed: %s", f.getErrorMessage()))
        self.reactor.callLater(self.rng.expovariate(self.rate), self._arrive)

    def _heard(self, outcome: Outcome) -> None:
        for offer in outcome.offers:
            if offer.agent_id == HUMAN.id:
                continue
            self.reactor.callLater(self.rng.uniform(*ACCEPT_DELAY), self._accept, offer)

    def _accept(self, offer) -> None:
        d = self.app.sessions.accept(offer.agent_id, offer.id)
        handle = self.rng.uniform(*HANDLE_SECONDS[offer.channel])
        d.addCallback(lambda _: self.reactor.callLater(handle, self._finish, offer))
        d.addErrback(lambda f: None)  # expired meanwhile: the router moved on

    def _finish(self, offer) -> None:
        if offer.channel is Channel.PHONE:
            d = self.app.sessions.wrap_up(offer.agent_id, offer.task_id)  # ends by its timer
        else:
            d = self.app.sessions.complete(offer.agent_id, offer.task_id, "answered")
        d.addCallback(lambda _: setattr(self, "done", self.done + 1))
        d.addErrback(lambda f: None)

    def _report(self) -> None:
        self.print_figures()
        self.reactor.callLater(REPORT_EVERY, self._report)

    def print_figures(self) -> None:
        now = self.reactor.seconds()
        parts = []
        for f in self.app.queries.queue_figures(now):
            if f.waiting or f.available:
                parts.append(f"{f.queue}/{f.channel}: {f.waiting} waiting"
                             f" (longest {f.longest_wait:.0f}s), {f.available} members free")
        presence = self.app.queries.agent_presence()
        counts = {}
        for p in presence.values():
            counts[p] = counts.get(p, 0) + 1
        agents = ", ".join(f"{n} {p}" for p, n in sorted(counts.items()))
        print(f"[demo] {self.done} handled | agents: {agents} | " + ("; ".join(parts) or "idle"),
              flush=True)


def demo(args, base: Config | None = None, specs: dict[str, EdgeSpec] | None = None) -> int:
    """Run the demo; `base` gives the HTTP host and port and the edges' settings (the database
    is the demo's own); `specs`: the edges found by entry point."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(folder / 'demo.db').resolve()}"
    schema.upgrade(url)
    base = base or Config()
    config = Config(database=DatabaseConfig(url), server=base.server,
                    log=LogConfig(level="WARNING"), edges=base.edges)
    app = App(config, reactor)
    status = {"code": 0}

    async def run() -> None:
        await app.start()
        roster = Roster(app.assignment, app.store)
        await app.store.put_calendar(DEMO_CALENDAR)
        c = DEMO_CALENDAR
        app.intake.calendars[c.name] = BusinessCalendar.from_spec(c.name, c.timezone, c.hours,
                                                                  c.holidays)
        for q in DEMO_QUEUES:
            await roster.put_queue(q)
        for a in DEMO_AGENTS:
            await roster.put_agent(a)
            await app.sessions.set_status(a.id, Presence.AVAILABLE)
        await roster.put_agent(HUMAN)  # offline until you sign in at the console
        # Accounts to sign in with (new passwords at every start, printed below once).
        you_password = secrets.token_urlsafe(PASSWORD_BYTES)
        boss_password = secrets.token_urlsafe(PASSWORD_BYTES)
        await app.accounts.set(HUMAN.id, "agent", HUMAN.name, you_password)
        await app.accounts.set(SUPERVISOR, "supervisor", "Demo Supervisor", boss_password)
        site, root = build_site(app.router)
        # The robots take calls without phones: the SIP/CTI edge (which makes phones decide who
        # can take calls, and listens on the SIP port) stays off in the demo.
        demo_specs = {n: s for n, s in (specs or {}).items() if n not in EDGES_OFF_IN_DEMO}
        edges = app.build_edges(demo_specs, root)
        await app.start_edges()
        port = reactor.listenTCP(config.server.http_port, site, interface=config.server.host)
        address = f"http://{config.server.host}:{port.getHost().port}"
        console = ""
        if "console" in edges:
            console = (f"  agent console: {address}/  sign in as `{HUMAN.id}` with the password "
                       f"{you_password}\n"
                       f"                 (the robots play the other agents)\n"
                       f"  wallboard:     {address}/wallboard  sign in as `{SUPERVISOR}` with the "
                       f"password {boss_password}\n"
                       f"  help pages:    {address}/help\n")
        print(f"""
Switchboard demo is running on {url}
  health:        {address}/healthz
  edges:         {", ".join(edges) or "none installed"}
  live figures:  printed below every {REPORT_EVERY:g} s ({len(DEMO_AGENTS)} robot agents,
                 ~{args.rate:g} e-mails and calls a minute from {CUSTOMERS} returning customers)
{console}  in another terminal:
    switchboard --database {url} tasks list
    switchboard --database {url} queues list
    switchboard --database {url} agents list
Stop with Ctrl-C.
""", flush=True)
        play = _Play(app, reactor, args.rate, args.seed)
        play.start()
        if args.duration:
            def finish() -> None:
                play.print_figures()  # the last figures, however short the run
                reactor.stop()

            reactor.callLater(args.duration, finish)

    def failed(failure):
        status["code"] = 1
        print(f"demo failed: {failure.getTraceback()}")
        reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(run()).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown", app.stop)
    reactor.run()
    return status["code"]
