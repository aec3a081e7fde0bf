"""`switchboard`: the command line. Installs the asyncio reactor before anything imports the
reactor, parses arguments, loads the configuration (every error at once), runs one command.

    switchboard serve | demo | simulate
    switchboard db upgrade | check
    switchboard agents add | set-skills | list | remove | disable | enable
    switchboard queues add | list | remove | disable | enable
    switchboard tasks list | show
    switchboard calendars add | list
    switchboard answers import FILE | export [FILE] | list | mode-set ...   (docs/answers.md)
    switchboard kb import FILE | export [FILE] | list | report
    switchboard categories add | rule-add | rule-remove | list | train   (docs/codification.md)
    switchboard report --from ... --to ... [--queue Q] [--interval 15m|1h|1d] [--format F]
    switchboard accounts set ID --role agent|supervisor --password-file F | list | disable | remove
    switchboard token --agent ID [--role R]   (and the other commands the edges bring)
    switchboard token revoke --jti JTI | --subject ID   (a running server hears it within
                                                         REVOCATION_POLL_SECONDS)

What it promises: every command and option has help, with its default; commands that read or
change a database never create one (a missing SQLite file is an error, exit 2; only `db
upgrade` and `demo` make one); bad input is a one-line `error: ...` (exit 2), never a
traceback; configuration changes go through the service layer, audited in the agent log.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_DATABASE = 4
# `switchboard token revoke ...` is parsed as `switchboard tokens revoke ...` (`token` itself
# is the console's command, whose `--agent` is required).
REVOKE_COMMAND = "tokens"

DESCRIPTION = (
    "Switchboard, a contact-centre dispatcher: e-mails and phone calls become tasks in common "
    "skill-based queues, offered to blended agents. `switchboard COMMAND --help` tells more "
    "about each command."
)
EPILOG = (
    "Changes to queues, agents, calendars, phones and categories made here are applied by a "
    "running server within a few seconds, without a restart. Configuration: ./switchboard.toml "
    "(or --config), overridden by SWITCHBOARD_<SECTION>_<KEY> variables (README, "
    "'Configuration')."
)
NOT_LIVE = " (a running server applies it within a few seconds)"
TASK_STATES = ("queued", "offered", "assigned", "wrap_up", "completed", "cancelled", "abandoned")
JSON_HELP = "print JSON instead of text"
PROGRESS_AFTER_SECONDS = 1.0  # a command that takes longer shows its progress on stderr


class HelpFormatter(argparse.HelpFormatter):
    """Each option's default after its help, unless it has none (or says it itself)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default is None or default is False
                or default is argparse.SUPPRESS or default == [] or default == ""
                or isinstance(action, argparse._SubParsersAction)):
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL,
                                                              argparse.ZERO_OR_MORE):
            return text
        return f"{text} (default: %(default)s)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchboard")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _install_reactor() -> None:
    from twisted.internet import asyncioreactor

    if "twisted.internet.reactor" not in sys.modules:
        asyncioreactor.install()


def _pairs(by_channel) -> str:
    """{PHONE: 20.0, EMAIL: 60.0} -> 'phone=20,email=60' (defaults shown in the help)."""
    return ",".join(f"{getattr(c, 'value', c)}={v:g}" for c, v in by_channel.items())


def build_parser(specs: dict | None = None) -> argparse.ArgumentParser:
    from dispatcher.domain.agents import DEFAULT_CAPACITY
    from dispatcher.domain.queues import (
        DEFAULT_OFFER_TIMEOUT,
        DEFAULT_SL_TARGET,
        DEFAULT_WRAP_UP_SECONDS,
    )

    p = argparse.ArgumentParser(prog="switchboard", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"switchboard {_version()}")
    p.add_argument("--config", help="TOML file (default ./switchboard.toml or $SWITCHBOARD_CONFIG)")
    p.add_argument("--database", help="database URL, e.g. sqlite:///switchboard.db or "
                                      "postgresql+psycopg2://user@host/db (default: [database] "
                                      "url of the configuration, sqlite:///switchboard.db)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("serve", help="run the dispatcher and its edges (refuses a stale schema)")

    demo = sub.add_parser("demo", help="a live demo contact centre on SQLite: sample queues, "
                                       "robot agents and customers")
    demo.add_argument("--dir", default="switchboard-demo", help="where the demo database lives "
                      "(run again on the same folder to carry on)")
    demo.add_argument("--duration", type=float, default=0,
                      help="stop after this many seconds (0: run until Ctrl-C)")
    demo.add_argument("--rate", type=float, default=30.0, help="new tasks per minute")
    demo.add_argument("--seed", type=int, default=7, help="the customers' and robots' dice")
    demo.add_argument("--http-port", type=int,
                      help="the pages and /healthz (default: [server] http_port, 8080)")
    demo.add_argument("--smtp-port", type=int,
                      help="SMTP intake (default: [email] smtp_port, 2525)")
    demo.add_argument("--console-port", type=int,
                      help="the console's WebSocket (default: [console] port, 8081)")

    sim = sub.add_parser("simulate", help="simulate a queue on the real core, on a virtual clock, "
                                          "next to the Erlang C prediction")
    sim.add_argument("--agents", type=int, default=14, help="agents taking calls (at least 1)")
    sim.add_argument("--arrivals-per-hour", type=float, default=200.0,
                     help="mean arrival rate (Poisson)")
    sim.add_argument("--aht", type=float, default=180.0,
                     help="average handling time, seconds (exponential)")
    sim.add_argument("--sl-seconds", type=float, default=20.0,
                     help="service-level target: answered within this many seconds")
    sim.add_argument("--tasks", type=int, default=20000, help="calls to simulate")
    sim.add_argument("--seed", type=int, default=1, help="random seed (same seed, same run)")
    sim.add_argument("--json", action="store_true", help=JSON_HELP)
    sim.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")

    db = sub.add_parser("db", help="the database schema (migrations)").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    db.add_parser("upgrade", help="create the database or apply every missing migration")
    db.add_parser("check", help="exit 1 when the schema is not up to date (or missing)")

    agents = sub.add_parser("agents", help="the agents: skills, queues, capacity"
                            ).add_subparsers(dest="action", required=True, metavar="ACTION")
    a = agents.add_parser("add", help="add or update an agent" + NOT_LIVE)
    a.add_argument("id", help="the agent's id (also their console sign-in id)")
    a.add_argument("--name", help="the name shown to supervisors and customers (default: the id)")
    a.add_argument("--skills", help="skill=level,... (levels 0-10)")
    a.add_argument("--queues", help="queue,queue,... they serve (each must exist)")
    a.add_argument("--capacity", help="tasks at a time per channel, e.g. phone=1,email=3 "
                                      f"(default: {_pairs(DEFAULT_CAPACITY)})")
    a.add_argument("--channels", help="email,phone: the channels they handle (default: both)")
    a = agents.add_parser("set-skills", help="replace an agent's skills" + NOT_LIVE)
    a.add_argument("id", help="the agent's id")
    a.add_argument("skills", help="skill=level,... (levels 0-10)")
    a = agents.add_parser("list", help="every agent with skills, queues and capacity")
    a.add_argument("--json", action="store_true", help=JSON_HELP)
    a = agents.add_parser("remove", help="delete an agent; refused while they hold work"
                          + NOT_LIVE)
    a.add_argument("id", help="the agent's id")
    a = agents.add_parser("disable", help="keep an agent but give them no work; refused while "
                          "they hold work" + NOT_LIVE)
    a.add_argument("id", help="the agent's id")
    a = agents.add_parser("enable", help="let a disabled agent work again" + NOT_LIVE)
    a.add_argument("id", help="the agent's id")

    queues = sub.add_parser("queues", help="the queues: requirements, escalation, deadlines"
                            ).add_subparsers(dest="action", required=True, metavar="ACTION")
    q = queues.add_parser("add", help="add or update a queue" + NOT_LIVE)
    q.add_argument("name", help="letters, digits, _ . - (it appears in addresses and settings)")
    q.add_argument("--requires", help="skill=level,... an agent needs")
    q.add_argument("--step", action="append",
                   help="escalation: SECONDS:skill=level,... ('-' drops a skill); repeatable")
    q.add_argument("--mode", choices=["push", "pull"], default="push",
                   help="push: offered to agents; pull: agents pick from a list")
    q.add_argument("--choice", choices=["longest_idle", "highest_skill"], default="longest_idle",
                   help="which available agent is offered a task")
    q.add_argument("--priority", type=int, default=0,
                   help="added to its tasks' own priority when they are ordered")
    q.add_argument("--sl-target", help="service-level target per channel, seconds "
                                       f"(default: {_pairs(DEFAULT_SL_TARGET)})")
    q.add_argument("--offer-timeout", help="seconds an offer waits for its agent "
                                           f"(default: {_pairs(DEFAULT_OFFER_TIMEOUT)})")
    q.add_argument("--wrap-up", type=float, help="seconds of wrap-up after a call "
                                                 f"(default: {DEFAULT_WRAP_UP_SECONDS:g})")
    q.add_argument("--calendar", help="business calendar name (see `calendars add`)")
    q.add_argument("--deadline", help="e-mail deadline: 'sliding 24h' or 'scheduled 12:00 +1'")
    q.add_argument("--dispositions",
                   help="the codes agents close tasks with: 'solved=Solved,callback=Call back "
                        "later' (none: any code)")
    q = queues.add_parser("list", help="every queue with its rules")
    q.add_argument("--json", action="store_true", help=JSON_HELP)
    q = queues.add_parser("remove", help="delete a queue (agents are dropped from it); refused "
                          "while tasks wait in it or are held" + NOT_LIVE)
    q.add_argument("name", help="the queue's name")
    q = queues.add_parser("disable", help="keep a queue but take no new tasks in it; refused "
                          "while tasks wait in it or are held" + NOT_LIVE)
    q.add_argument("name", help="the queue's name")
    q = queues.add_parser("enable", help="let a disabled queue take tasks again" + NOT_LIVE)
    q.add_argument("name", help="the queue's name")

    tasks = sub.add_parser("tasks", help="the work: e-mails and calls"
                           ).add_subparsers(dest="action", required=True, metavar="ACTION")
    t = tasks.add_parser("list", help="tasks, newest first: request number, state, age, agent, "
                                      "customer, subject or caller")
    t.add_argument("--state", choices=TASK_STATES, help="only tasks in this state")
    t.add_argument("--queue", help="only this queue's tasks")
    t.add_argument("--limit", type=int, default=100, help="the newest N (0: all)")
    t.add_argument("--json", action="store_true", help=JSON_HELP)
    t = tasks.add_parser("show", help="a task, its customer, its conversation and its full "
                                      "trail of events")
    t.add_argument("id", help="a task id or a request number (SB-000123)")
    t.add_argument("--json", action="store_true", help=JSON_HELP + " (by task id)")

    revoke = sub.add_parser(
        REVOKE_COMMAND, help="revoke console/CTI tokens (also `switchboard token revoke`)"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    r = revoke.add_parser("revoke", help="refuse a token (by its jti) or every token of a "
                                         "subject issued until now; running servers close "
                                         "the sessions within a few seconds")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--jti", help="the token's `jti` claim (tokens we issue have one)")
    which.add_argument("--subject", help="an agent's id, a supervisor's id or a PBX's name: "
                                         "every token issued to it before now")

    cal = sub.add_parser("calendars", help="business calendars for deadlines"
                         ).add_subparsers(dest="action", required=True, metavar="ACTION")
    c = cal.add_parser("add", help="add or update a business calendar" + NOT_LIVE)
    c.add_argument("name", help="the calendar's name (queues name it with --calendar)")
    c.add_argument("--timezone", required=True, help="IANA zone, e.g. Europe/Paris")
    c.add_argument("--hours", required=True,
                   help="'mon-fri=09:00-12:30,13:30-18:00;sat=09:00-12:00' (24:00 allowed)")
    c.add_argument("--holidays", default="", help="ISO dates: 2026-12-25,2027-01-01")
    c = cal.add_parser("list", help="every calendar")
    c.add_argument("--json", action="store_true", help=JSON_HELP)

    from .phones import add_commands as add_phone_commands

    add_phone_commands(sub)

    from .report import add_parser as add_report_parser

    add_report_parser(sub)

    from .answers import add_commands as add_answer_commands  # answers, kb

    add_answer_commands(sub)

    from .categories import add_commands as add_category_commands

    add_category_commands(sub)

    from .accounts import add_commands as add_account_commands  # console sign-in

    add_account_commands(sub)

    for spec in (specs or {}).values():  # commands the edges bring (e.g. `token`)
        if spec.commands is not None:
            before = set(sub.choices)
            spec.commands(sub)
            for name in set(sub.choices) - before:
                sub.choices[name].set_defaults(edge_name=spec.name)
    _formatted(p)
    return p


def _formatted(parser: argparse.ArgumentParser) -> None:
    """Every parser (the command modules' and the edges' too) shows defaults the same way, and
    a `--json` without words of its own says what it does."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _formatted(child)
        elif action.option_strings == ["--json"] and not action.help:
            action.help = JSON_HELP


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `switchboard tasks list | head`: the reader has what it wanted
        _quiet_stdout()
        return 0


def _quiet_stdout() -> None:
    """stdout's reader went away: send what is left (and the flush at exit) nowhere, so that
    Python does not report a second broken pipe."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _main(argv: list[str] | None = None) -> int:
    _install_reactor()
    from .edges import discover

    specs = discover()
    args = build_parser(specs).parse_args(_revoke_alias(sys.argv[1:] if argv is None else argv))

    from sqlalchemy.exc import SQLAlchemyError

    from dispatcher.domain.errors import DomainError

    from . import config as config_mod

    if args.command == "simulate":
        try:
            return _simulate(args)
        except DomainError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        config = config_mod.load(args.config, edges={n: s.settings for n, s in specs.items()})
    except config_mod.ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    url = args.database or config.database.url
    refused = _no_database(args, url)
    if refused is not None:
        return refused
    if args.command == "demo":  # the demo prints its own figures: keep the log for warnings
        from dataclasses import replace

        config = replace(config, log=replace(config.log, level="WARNING"))
    _logging(config)
    if getattr(args, "edge_command", None) is not None:
        return _edge_command(args, config.edges[args.edge_name], url)
    try:
        if args.command == "db":
            from . import admin

            return admin.cmd_db_upgrade(url) if args.action == "upgrade" else admin.cmd_db_check(url)
        if args.command == "serve":
            from .serve import serve

            return serve(config, url, specs)
        if args.command == "demo":
            from .demo import demo

            return demo(args, config, specs)
        if args.command == "report":
            from .report import report_command

            return report_command(args, url)
        return _admin(args, url)
    except DomainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SQLAlchemyError as exc:
        print(f"error: database {_shown(url)}: {_first_line(exc)}", file=sys.stderr)
        return EXIT_DATABASE


# Databases made only on purpose: the others refuse a missing SQLite file instead of leaving an
# empty one behind.
CREATES_DATABASE = frozenset({("db", "upgrade"), ("demo", None), ("simulate", None)})


def _missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL when it does not exist (None for other databases)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # reported by the command, with the database's own words
    name = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or name in ("", ":memory:") or name.startswith(
            "file:"):
        return None
    path = Path(name)
    return None if path.exists() else path


def _no_database(args, url: str) -> int | None:
    """Refuse a command on a SQLite file that does not exist (an exit code), or None."""
    if (args.command, getattr(args, "action", None)) in CREATES_DATABASE:
        return None
    missing = _missing_sqlite_file(url)
    if missing is None:
        return None
    where = f"no database at {missing}"
    hint = ("create it with `switchboard db upgrade` (with the same --database or "
            "configuration), or name the right one with --database")
    if args.command == "serve":
        print(f"switchboard: database: {where}: {hint}", file=sys.stderr)
        return 1
    if args.command == "db":  # check: a missing database is not up to date
        print(f"{where}; {hint}", file=sys.stderr)
        return 1
    print(f"error: {where}: {hint}", file=sys.stderr)
    return EXIT_USAGE


def _simulate(args) -> int:
    from .report import ProgressLine
    from .simulate import simulate

    line = None if args.quiet else ProgressLine(sys.stderr, label="simulate", unit="calls",
                                                verb="answered")
    started = time.monotonic()

    def progress(done: int, total: int) -> None:  # only for runs long enough to wait for
        if line is not None and time.monotonic() - started >= PROGRESS_AFTER_SECONDS:
            line(done, total)

    result = simulate(args.agents, args.arrivals_per_hour, args.aht, args.sl_seconds, args.tasks,
                      args.seed, progress)
    if line is not None and line.shown:
        line.finish(result.tasks)
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    ec = result.erlang_c

    def predicted(key: str, fmt: str) -> str:
        return f"{'-':>12}" if result.overloaded else format(ec[key], fmt)

    print(f"{result.tasks} tasks, {result.agents} agents, {result.arrivals_per_hour:g}/h, "
          f"AHT {result.aht_seconds:g} s, {result.simulated_seconds / 3600:.1f} h simulated")
    print(f"{'':22}{'simulated':>12}{'Erlang C':>12}")
    print(f"{'service level':22}{result.service_level:>12.3f}"
          f"{predicted('service_level', '>12.3f')}")
    print(f"{'avg speed of answer':22}{result.asa_seconds:>11.2f}s"
          + (f"{'-':>12}" if result.overloaded else f"{ec['asa_seconds']:>11.2f}s"))
    print(f"{'probability of wait':22}{result.p_wait:>12.3f}{predicted('p_wait', '>12.3f')}")
    print(f"{'occupancy':22}{result.occupancy:>12.3f}")
    if result.overloaded:
        print(f"overloaded: {result.load:.1f} erlangs of work arrive for {result.agents} agents, "
              f"so the queue grows for as long as calls keep coming; Erlang C has no steady "
              f"state to predict (at least {int(result.load) + 1} agents are needed)")
    return 0


def _edge_command(args, settings, url: str) -> int:
    """An edge's command (e.g. `token`): under the reactor with the database open, given the
    console accounts and the token secret kept in the database (`EdgeCommandContext`)."""

    async def command(storage, args) -> int:
        import inspect

        from twisted.internet import reactor

        from dispatcher.service.edges import EdgeCommandContext

        from .app import accounts_service, load_token_secret

        context = EdgeCommandContext(reactor, accounts_service(storage, reactor),
                                     await load_token_secret(storage, reactor))
        result = args.edge_command(args, settings, context)
        if inspect.isawaitable(result):  # a coroutine or a Deferred
            result = await result
        return int(result)

    return _admin(args, url, command)


def _revoke_alias(argv: list[str]) -> list[str]:
    """`token revoke ...` -> `tokens revoke ...`."""
    argv = list(argv)
    for i in range(len(argv) - 1):
        if argv[i] == "token" and argv[i + 1] == "revoke":
            argv[i] = REVOKE_COMMAND
            break
    return argv


async def cmd_tokens_revoke(storage, args) -> int:
    """Store the revocation; servers on this database read it within their poll interval."""
    from twisted.internet import reactor

    from dispatcher.domain.errors import InvalidValue
    from dispatcher.domain.events import OPERATOR
    from dispatcher.service import tokens

    now, actor = reactor.seconds(), OPERATOR
    value = (args.jti or args.subject or "").strip()
    if not value:
        raise InvalidValue("give a non-empty --jti or --subject")
    if args.jti:
        await tokens.revoke_token(storage.revocations, value, now, actor,
                                  revoked=tokens.RevocationList())
        print(f"revoked the token {value}")
    else:
        await tokens.revoke_subject(storage.revocations, value, now, actor,
                                    revoked=tokens.RevocationList())
        print(f"revoked every token of {value} issued until now")
    return 0


def _admin(args, url: str, command=None) -> int:
    from twisted.internet import reactor, task
    from twisted.internet.defer import ensureDeferred

    from . import accounts, admin, phones
    from . import answers as answer_commands
    from . import categories as category_commands
    from .app import Storage

    commands = {
        ("agents", "add"): admin.cmd_agents_add,
        ("agents", "list"): admin.cmd_agents_list,
        ("agents", "set-skills"): admin.cmd_agents_set_skills,
        ("agents", "remove"): admin.cmd_agents_remove,
        ("agents", "disable"): admin.cmd_agents_disable,
        ("agents", "enable"): admin.cmd_agents_enable,
        ("queues", "add"): admin.cmd_queues_add,
        ("queues", "list"): admin.cmd_queues_list,
        ("queues", "remove"): admin.cmd_queues_remove,
        ("queues", "disable"): admin.cmd_queues_disable,
        ("queues", "enable"): admin.cmd_queues_enable,
        ("tasks", "list"): admin.cmd_tasks_list,
        ("tasks", "show"): admin.cmd_tasks_show,
        ("calendars", "add"): admin.cmd_calendars_add,
        ("calendars", "list"): admin.cmd_calendars_list,
        (REVOKE_COMMAND, "revoke"): cmd_tokens_revoke,
        **phones.COMMANDS,
        **answer_commands.COMMANDS,
        **category_commands.COMMANDS,
        **accounts.COMMANDS,
    }
    command = command or commands[(args.command, args.action)]
    status = {"code": 0}

    async def run(_reactor) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        from dispatcher.domain.errors import DomainError
        from dispatcher.storage import schema

        # Start once the reactor runs: the pool starts itself then, and a command that fails
        # before its first database call must not stop the pool before it has started.
        await task.deferLater(_reactor, 0, lambda: None)
        storage = None
        try:
            storage = Storage(url, reactor)
            if not storage.check().ok:
                print(f"the database is not ready: {schema.STALE_SCHEMA_HINT}", file=sys.stderr)
                status["code"] = 1
                return
            storage.start()
            status["code"] = await command(storage, args)
        except DomainError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status["code"] = EXIT_USAGE
        except SQLAlchemyError as exc:
            print(f"error: database {_shown(url)}: {_first_line(exc)}", file=sys.stderr)
            status["code"] = EXIT_DATABASE
        except BrokenPipeError:  # `... | head`: the reader has what it wanted
            _quiet_stdout()
        finally:
            if storage is not None:
                await storage.stop()

    try:
        task.react(lambda _reactor: ensureDeferred(run(_reactor)))
    except SystemExit as exc:
        return status["code"] or int(exc.code or 0)
    return status["code"]


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL: show nothing of it
        return "(unparsable URL)"


def _first_line(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _logging(config) -> None:
    level = getattr(logging, config.log.level.upper(), logging.INFO)
    # Alembic says at INFO which plugins it loaded, at every command: keep that for DEBUG.
    logging.getLogger("alembic").setLevel(level if level <= logging.DEBUG else logging.WARNING)
    if config.log.format == "json":
        from .logs import JsonFormatter

        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .logs import protect

    protect()  # no token, password or cookie reaches a line, at any level (logs.py)


if __name__ == "__main__":
    sys.exit(main())
