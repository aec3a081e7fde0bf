"""`switchboard`: the command line. Installs the asyncio reactor before anything imports the
reactor, parses arguments, loads the configuration (every error at once), runs one command.

    switchboard serve | demo | simulate [--scenario FILE] | staffing FILE
    switchboard replay [--day D | --from T --to T] [--changes FILE] [--add-agents N --like ID]
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

The runtime keeps `serve`, `demo`, `simulate` and `db`; the operator's commands (agents ...
accounts, report, token revoke) are the admin edge's (admin/commands.py) and `token` the
console's, each loaded through the entry points and run here with the database open and the
services over it (`EdgeCommandContext`).

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
from dataclasses import replace
from pathlib import Path

from .config import ROLES

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
JSON_HELP = "print JSON instead of text"


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


def build_parser(specs: dict | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchboard", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"switchboard {_version()}")
    p.add_argument("--config", help="TOML file (default ./switchboard.toml or $SWITCHBOARD_CONFIG)")
    p.add_argument("--database", help="database URL, e.g. sqlite:///switchboard.db or "
                                      "postgresql+psycopg2://user@host/db (default: [database] "
                                      "url of the configuration, sqlite:///switchboard.db)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_p = sub.add_parser("serve", help="run the dispatcher and its edges (refuses a stale "
                                           "schema)")
    serve_p.add_argument("--role", choices=ROLES, help="with several nodes on PostgreSQL: all "
                         "(route when holding the lease, else hold mail), edge (only hold "
                         "mail for the router), router (no edge while waiting); default: "
                         "[cluster] role, all")

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
    sim.add_argument("--seed", type=int, help="random seed (same seed, same run; default 1, or "
                                              "the scenario's own)")
    sim.add_argument("--scenario", metavar="FILE", help="play a whole centre described in a "
                     "TOML file (docs/staffing.md) instead of one queue: queues, skills, "
                     "shifts, arrival profiles, patience, wrap-up, e-mail deadlines; the "
                     "one-queue options are then ignored")
    sim.add_argument("--json", action="store_true", help=JSON_HELP)
    sim.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")

    staff = sub.add_parser("staffing", help="agents needed per 15 minutes for a scenario's "
                                            "calls and e-mails, checked on the simulator")
    staff.add_argument("scenario", metavar="SCENARIO", help="the scenario, a TOML file "
                       "(docs/staffing.md; its agents are ignored: the plan brings its own)")
    staff.add_argument("--sl", type=float, help="share of calls to answer within --within "
                       "(default: each queue's sl_share, 0.8 unless it says)")
    staff.add_argument("--within", type=float, metavar="SECONDS", help="the calls' target, "
                       "seconds (default: each queue's sl_seconds.phone, 20 unless it says)")
    staff.add_argument("--email-share", type=float, help="share of e-mails to answer by their "
                       "deadline (default 0.9)")
    staff.add_argument("--seed", type=int, help="random seed of the check (default: the "
                                                "scenario's)")
    staff.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report "
                                                      "with plots")
    staff.add_argument("--json", action="store_true", help=JSON_HELP)
    staff.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")

    from .replay_command import add_parser as add_replay

    add_replay(sub)  # switchboard replay: a recorded day again, with another configuration

    db = sub.add_parser("db", help="the database schema (migrations)").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    db.add_parser("upgrade", help="create the database or apply every missing migration")
    db.add_parser("check", help="exit 1 when the schema is not up to date (or missing)")

    for spec in (specs or {}).values():  # commands the edges bring (admin's, `token`...)
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


def _main(argv: list[str] | None = None) -> int:  # noqa: C901 - a branch per runtime command
    _install_reactor()
    from .edges import discover

    specs = discover()
    args = build_parser(specs).parse_args(_revoke_alias(sys.argv[1:] if argv is None else argv))

    from sqlalchemy.exc import SQLAlchemyError

    from dispatcher.domain.errors import DomainError

    from . import config as config_mod

    if args.command in ("simulate", "staffing"):  # no configuration, no database
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
        config = replace(config, log=replace(config.log, level="WARNING"))
    _logging(config)
    if getattr(args, "edge_command", None) is not None:
        return _edge_command(args, config.edges[args.edge_name], url)
    try:
        if args.command == "db":
            return cmd_db_upgrade(url) if args.action == "upgrade" else cmd_db_check(url)
        if args.command == "serve":
            from .serve import serve

            return serve(config, url, specs, role=args.role)
        if args.command == "replay":  # reads the database, writes nothing, needs no server
            from .replay_command import replay_command

            return replay_command(args, config, url)
        if args.command == "demo":
            from .demo import demo

            return demo(args, config, specs)
        raise AssertionError(f"no command {args.command!r}")  # argparse knows every command
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
    """Refuse a command whose database this install cannot reach (its driver unknown or not
    installed), or on a SQLite file that does not exist (an exit code), or None."""
    from dispatcher.storage.engine import driver_problem

    unusable = driver_problem(url)
    if unusable is not None:
        return _refuse(args, "cannot use the database URL", unusable)
    if (args.command, getattr(args, "action", None)) in CREATES_DATABASE:
        return None
    missing = _missing_sqlite_file(url)
    if missing is None:
        return None
    return _refuse(args, f"no database at {missing}",
                   "create it with `switchboard db upgrade` (with the same --database or "
                   "configuration), or name the right one with --database")


def _refuse(args, where: str, hint: str) -> int:
    """Say why the command cannot run on its database, as the command's kind of output does."""
    if args.command == "serve":
        print(f"switchboard: database: {where}: {hint}", file=sys.stderr)
        return 1
    if args.command == "db":  # check: a database that cannot be reached is not up to date
        print(f"{where}; {hint}", file=sys.stderr)
        return 1
    print(f"error: {where}: {hint}", file=sys.stderr)
    return EXIT_USAGE


def _simulate(args) -> int:
    if args.command == "staffing" or args.scenario is not None:
        from .staffing_command import simulate_command, staffing_command

        return (staffing_command if args.command == "staffing" else simulate_command)(args)
    from dispatcher.progress import PROGRESS_AFTER_SECONDS, ProgressLine

    from .simulate import simulate

    line = None if args.quiet else ProgressLine(sys.stderr, label="simulate", unit="calls",
                                                verb="answered")
    started = time.monotonic()

    def progress(done: int, total: int) -> None:  # only for runs long enough to wait for
        if line is not None and time.monotonic() - started >= PROGRESS_AFTER_SECONDS:
            line(done, total)

    result = simulate(args.agents, args.arrivals_per_hour, args.aht, args.sl_seconds, args.tasks,
                      1 if args.seed is None else args.seed, progress)
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
    """An edge's command (the admin edge's, the console's `token`...): under the reactor with
    the database open, given the services over it (`EdgeCommandContext`, built by
    app.CommandServices); the token secret kept in the database is loaded (made on first use)
    unless the command's parser says `needs_token_secret=False`."""

    async def command(storage, args) -> int:
        import inspect

        from twisted.internet import reactor

        from .app import CommandServices

        services = CommandServices(storage, reactor)
        try:
            context = await services.context(
                token_secret=getattr(args, "needs_token_secret", True))
            result = args.edge_command(args, settings, context)
            if inspect.isawaitable(result):  # a coroutine or a Deferred
                result = await result
            return int(result)
        finally:
            services.stop()

    return _with_database(args, url, command)


def _revoke_alias(argv: list[str]) -> list[str]:
    """`token revoke ...` -> `tokens revoke ...`."""
    argv = list(argv)
    for i in range(len(argv) - 1):
        if argv[i] == "token" and argv[i + 1] == "revoke":
            argv[i] = REVOKE_COMMAND
            break
    return argv


def cmd_db_upgrade(url: str) -> int:
    from dispatcher.storage import schema

    before = schema.current(url)
    schema.upgrade(url)
    print(f"schema {before or 'empty'} -> {schema.current(url)} (head)")
    return 0


def cmd_db_check(url: str) -> int:
    from dispatcher.storage import schema

    status = schema.check(url)
    if status.ok:
        print(f"schema up to date ({status.current})")
        return 0
    print(f"schema is at {status.current or 'nothing'}, head is {status.head}; "
          f"{schema.STALE_SCHEMA_HINT}", file=sys.stderr)
    return 1


def _with_database(args, url: str, command) -> int:
    """Run `await command(storage, args)` under the reactor with the database open (its schema
    checked first); its exit code, or 2 for a DomainError, 4 for a database error."""
    from twisted.internet import reactor, task
    from twisted.internet.defer import ensureDeferred

    from .app import Storage

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
