"""`switchboard demo`: a working contact centre in one command, on the embedded SQLite default.

Creates (or reuses) a SQLite database under `--dir`, upgrades its schema, seeds sample queues,
agents, a business calendar, a library of standard answers and help articles (demo_data/, in
the `answers import` / `kb import` formats of docs/answers.md), starts the real dispatcher
with its edges (SMTP intake with the queues' addresses, the contact form, the console and the
wallboard), then lets customers and robot agents play (demo_play.py). It prints where to
write, what to open and the commands to try, exactly as they run from here, then one short
status line every few seconds. The desk of the agent `you` is for a person: its account gets a
random password, printed once at start, and so does the supervisor account `boss`.

Run again on the same folder, it carries on: robots finish what they held, and work held by
anyone who does not come back returns to its queue after the restart grace (assignment.py).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sys
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.deadlines import BusinessCalendar
from dispatcher.domain.queues import EscalationStep, Queue
from dispatcher.service.edges import EdgeSpec
from dispatcher.service.ports import Calendar
from dispatcher.storage import schema

from . import demo_sink
from .app import App
from .config import Config, DatabaseConfig, LogConfig
from .demo_play import Play, data_lines
from .http import HttpLimits, build_site
from .serve import guard_connections, listen_http

log = logging.getLogger(__name__)

REPORT_EVERY = 3.0  # seconds between two status lines
PHONE_WRAP_UP = 3.0
SUPERVISOR = "boss"  # the demo's supervisor account
PASSWORD_BYTES = 9  # 12 characters, printed once
EDGES_OFF_IN_DEMO = frozenset({"phone"})
DEMO_AUTHOR = "demo"  # who the seeded answers are by

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
# Where customers write: SMTP intake takes these addresses (the queues' From addresses too).
DEMO_ADDRESSES = {"support": "support@example.com", "sales": "sales@example.com",
                  "billing": "billing@example.com"}
FORM_QUEUE = "support"
# The response mode of every queue: offers carry the top three answers; a tenth of the
# answers wait for the supervisor's review.
DEMO_RULE = {"queue": "*", "category": "*", "mode": "suggested", "review_share": 0.1}
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


def _tuned(settings: Any, **wanted: Any) -> Any:
    """An edge's settings with the demo's values for the fields it has."""
    names = {f.name for f in fields(settings)}
    return replace(settings, **{k: v for k, v in wanted.items() if k in names})


def demo_config(base: Config, url: str, args: Any, sink_port: int | None = None) -> Config:
    """The demo's configuration: its own database, the ports asked for, and the e-mail edge
    set up for the demo's queues (recipients, queue addresses, the contact form, the local
    sink as relay) unless the configuration already names them; the console accepts pages
    from the demo's address."""
    server = base.server
    if args.http_port is not None:
        server = replace(server, http_port=args.http_port)
    edges = dict(base.edges)
    email = edges.get("email")
    if email is not None:
        routes = ",".join(f"{a}={q}" for q, a in DEMO_ADDRESSES.items())
        froms = ",".join(f"{q}={a}" for q, a in DEMO_ADDRESSES.items())
        edges["email"] = _tuned(
            email,
            smtp_port=args.smtp_port if args.smtp_port is not None else email.smtp_port,
            recipients=email.recipients or routes,
            queue_from=email.queue_from or froms,
            form_queue=email.form_queue or FORM_QUEUE,
            from_address=(DEMO_ADDRESSES[FORM_QUEUE] if email.from_address.endswith(
                ".invalid") else email.from_address),
            from_name=email.from_name if email.from_name != "Support" else "Demo Support",
        )
        if not email.relay_host and sink_port is not None:
            edges["email"] = _tuned(edges["email"], relay_host="127.0.0.1", relay_port=sink_port)
    console = edges.get("console")
    if console is not None:
        http = f"http://{server.host}:{server.http_port}"
        origins = [o for o in (http, f"http://localhost:{server.http_port}")
                   if o not in console.allowed_origins]
        edges["console"] = _tuned(
            console,
            port=args.console_port if args.console_port is not None else console.port,
            allowed_origins=",".join(filter(None, [console.allowed_origins, *origins])),
        )
    return Config(database=DatabaseConfig(url), server=server, log=LogConfig(level="WARNING"),
                  edges=edges)


def command_prefix() -> str:
    """How to run `switchboard` from the current directory: the bare name when it is on PATH,
    else the script next to this interpreter (e.g. `.venv/bin/switchboard`)."""
    script = Path(sys.executable).with_name("switchboard")
    found = shutil.which("switchboard")
    if found and script.exists() and Path(found).resolve() == script.resolve():
        return "switchboard"
    if not script.exists():
        return f"{sys.executable} -m dispatcher.runtime.cli"
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else str(script)


async def seed(app: App) -> dict[str, int]:
    """Calendar, queues, agents, answers, help articles and the response mode (again at every
    start: unchanged content saves nothing); what the library holds."""
    configuration = app.configuration
    await app.store.put_calendar(DEMO_CALENDAR)
    c = DEMO_CALENDAR
    app.intake.calendars[c.name] = BusinessCalendar.from_spec(c.name, c.timezone, c.hours,
                                                              c.holidays)
    for q in DEMO_QUEUES:
        await configuration.change_queue(q)
    for a in (*DEMO_AGENTS, HUMAN):  # `you` stays offline until you sign in
        await configuration.change_agent(Agent(a.id, a.name, dict(a.skills), set(a.queues)))
    await app.library.import_answers(data_lines("answers.jsonl"), DEMO_AUTHOR)
    await app.library.import_articles(data_lines("articles.jsonl"))
    await app.library.put_rule(DEMO_RULE)
    return {"answers": len(app.library.list_answers()),
            "articles": len(app.library.list_articles())}


class Status:
    """The short status line, every REPORT_EVERY seconds."""

    def __init__(self, app: App, play: Play, reactor: Any) -> None:
        self.app, self.play, self.reactor = app, play, reactor

    def start(self) -> None:
        self.reactor.callLater(REPORT_EVERY, self._tick)

    def _tick(self) -> None:
        self.play.revive()
        self.print()
        self.reactor.callLater(REPORT_EVERY, self._tick)

    def line(self) -> str:
        now = self.reactor.seconds()
        figures = self.app.queries.queue_figures(now)
        waiting = sum(f.waiting for f in figures)
        longest = max((f.longest_wait for f in figures if f.waiting), default=0.0)
        presence = self.app.queries.agent_presence()
        robots: dict[str, int] = {}
        for agent_id, state in presence.items():
            if agent_id in self.play.robots:
                robots[state] = robots.get(state, 0) + 1
        crew = ", ".join(f"{n} {s}" for s, n in sorted(robots.items())) or "none"
        wait = f"{waiting} waiting" + (f" (longest {longest:.0f}s)" if waiting else "")
        return (f"[demo] {self.play.done} handled | {wait} | robots: {crew} | "
                f"{HUMAN.id}: {presence.get(HUMAN.id, Presence.OFFLINE.value)}")

    def print(self) -> None:
        try:
            print(self.line(), flush=True)
        except BrokenPipeError:  # the reader went away (`| head`): stop
            self.reactor.stop()


def banner(url: str, address: str, edges: list[str], config: Config, passwords: dict[str, str],
           seeded: dict[str, int], resumed: int, args: Any, sink: bool) -> str:
    run = f"{command_prefix()} --database {url}"
    today = datetime.now(UTC).date()
    lines = [f"Switchboard demo on {url}"]
    if "console" in edges:
        lines += [
            f"  agent console  {address}/  sign in as `{HUMAN.id}` with the password "
            f"{passwords[HUMAN.id]}",
            f"  wallboard      {address}/wallboard  sign in as `{SUPERVISOR}` with the password "
            f"{passwords[SUPERVISOR]}",
            f"  help pages     {address}/help  ({seeded['articles']} articles; "
            f"{seeded['answers']} standard answers in the library)",
        ]
    email = config.edges.get("email")
    if "email" in edges and email is not None:
        smtp = f"{email.smtp_host}:{email.smtp_port}"
        lines += [
            f"  contact form   {address}/forms/contact",
            f"  write to       {', '.join(DEMO_ADDRESSES.values())} by SMTP on {smtp}, e.g.",
            (f"                 swaks --server {smtp} --to {DEMO_ADDRESSES['support']}"
             if shutil.which("swaks") else
             f"                 python3 -c \"import smtplib; smtplib.SMTP('{email.smtp_host}', "
             f"{email.smtp_port}).sendmail('me@example.org', ['{DEMO_ADDRESSES['support']}'], "
             f"'Subject: Hello\\n\\nMy parcel is late.')\""),
            (f"                 replies and acknowledgements go out through the relay "
             f"{email.relay_host}:{email.relay_port}"
             + (" (the demo's sink: nothing leaves this machine)" if sink else "")),
        ]
    lines += [
        f"  health         {address}/healthz",
        f"  robots         {len(DEMO_AGENTS)} robot agents answer ~{args.rate:g} e-mails and "
        f"calls a minute from returning customers"
        + (f" (they picked up {resumed} tasks held at the last stop)" if resumed else ""),
        f"In another terminal, from {os.getcwd()}:",
        f"    {run} tasks list",
        f"    {run} tasks show SB-000001",
        f"    {run} queues list",
        f"    {run} agents list",
        f"    {run} answers list",
        f"    {run} report --from {today} --to {today + timedelta(days=1)}",
    ]
    activate = Path(sys.executable).parent / "activate"
    if command_prefix() != "switchboard" and activate.exists():
        shown = os.path.relpath(activate)
        shown = shown if not shown.startswith("..") else str(activate)
        lines.append(f"  (or `. {shown}` first, then `switchboard ...`)")
    lines.append("Stop with Ctrl-C; run it again on the same folder to carry on.")
    return "\n" + "\n".join(lines) + "\n"


def demo(args, base: Config | None = None, specs: dict[str, EdgeSpec] | None = None) -> int:
    """Run the demo; `base` gives the HTTP host and port and the edges' settings (the database
    is the demo's own); `specs`: the edges found by entry point."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(folder / 'demo.db').resolve()}"
    schema.upgrade(url)
    sink = demo_sink.Sink()
    sink_port = demo_sink.listen(reactor, sink)
    config = demo_config(base or Config(), url, args, sink_port.getHost().port)
    email = config.edges.get("email")
    own_sink = email is not None and email.relay_port == sink_port.getHost().port
    app = App(config, reactor)
    gate = guard_connections(config, reactor)
    status = {"code": 0}

    async def run() -> None:
        await app.start()
        seeded = await seed(app)
        # Accounts to sign in with (new passwords at every start, printed below once).
        passwords = {HUMAN.id: secrets.token_urlsafe(PASSWORD_BYTES),
                     SUPERVISOR: secrets.token_urlsafe(PASSWORD_BYTES)}
        await app.accounts.set(HUMAN.id, "agent", HUMAN.name, passwords[HUMAN.id])
        await app.accounts.set(SUPERVISOR, "supervisor", "Demo Supervisor",
                               passwords[SUPERVISOR])
        site, root = build_site(HttpLimits.from_server(config.server))
        # The robots take calls without phones: the SIP/CTI edge (which makes phones decide who
        # can take calls, and listens on the SIP port) stays off in the demo.
        demo_specs = {n: s for n, s in (specs or {}).items() if n not in EDGES_OFF_IN_DEMO}
        edges = app.build_edges(demo_specs, root)
        await app.start_edges()
        port = listen_http(reactor, config, site, gate)
        address = f"http://{config.server.host}:{port.getHost().port}"
        email = config.edges.get("email")
        smtp = (email.smtp_host, email.smtp_port) if "email" in edges else None
        # The play listens before the robots are available: offers made to them at once (work
        # left waiting at the last stop) are heard and taken.
        play = Play(app, reactor, args.rate, args.seed, tuple(a.id for a in DEMO_AGENTS), smtp,
                    dict(DEMO_ADDRESSES), sink.answering if own_sink else None)
        resumed = play.resume()
        for a in DEMO_AGENTS:
            await app.sessions.set_status(a.id, Presence.AVAILABLE)
        print(banner(url, address, edges, config, passwords, seeded, resumed, args, own_sink),
              flush=True)
        play.start()
        line = Status(app, play, reactor)
        line.start()
        if args.duration:
            def finish() -> None:
                line.print()  # the last figures, however short the run
                reactor.stop()

            reactor.callLater(args.duration, finish)

    def failed(failure):
        status["code"] = 1
        try:
            if failure.check(BrokenPipeError):  # the reader went away (`| head`): just stop
                status["code"] = 0
            else:
                print(f"demo failed: {failure.getTraceback()}", file=sys.stderr, flush=True)
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(run()).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown", app.stop)
    reactor.run()
    return status["code"]

