"""`switchboard`: the command line. Installs the asyncio reactor before anything imports the
reactor, parses arguments, loads the configuration (every error at once), runs one command.

    switchboard serve | demo | simulate
    switchboard db upgrade | check
    switchboard agents add | list | set-skills
    switchboard queues add | list
    switchboard tasks list [--json]
    switchboard answers import FILE | export [FILE] | list | mode-set ...   (docs/answers.md)
    switchboard kb import FILE | export [FILE] | list | report
    switchboard categories add | rule-add | rule-remove | list | train   (docs/codification.md)
    switchboard report --from ... --to ... [--queue Q] [--interval 15m|1h|1d] [--format F]
    switchboard accounts set ID --role agent|supervisor --password-file F | list | disable | remove
    switchboard token --agent ID [--role R]   (and the other commands the edges bring)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_DATABASE = 4


def _install_reactor() -> None:
    from twisted.internet import asyncioreactor

    if "twisted.internet.reactor" not in sys.modules:
        asyncioreactor.install()


def build_parser(specs: dict | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchboard", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="TOML file (default ./switchboard.toml or $SWITCHBOARD_CONFIG)")
    p.add_argument("--database", help="database URL (overrides the configuration)")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="run the dispatcher")

    demo = sub.add_parser("demo", help="a demo on SQLite with sample queues, agents and traffic")
    demo.add_argument("--dir", default="switchboard-demo", help="where the demo database lives")
    demo.add_argument("--duration", type=float, default=0,
                      help="stop after this many seconds (0: run until Ctrl-C)")
    demo.add_argument("--rate", type=float, default=30.0, help="new tasks per minute")
    demo.add_argument("--seed", type=int, default=7)

    sim = sub.add_parser("simulate", help="simulate a queue on the real core, on a virtual clock")
    sim.add_argument("--agents", type=int, default=14)
    sim.add_argument("--arrivals-per-hour", type=float, default=200.0)
    sim.add_argument("--aht", type=float, default=180.0, help="average handling time, seconds")
    sim.add_argument("--sl-seconds", type=float, default=20.0, help="service-level target")
    sim.add_argument("--tasks", type=int, default=20000)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--json", action="store_true")

    db = sub.add_parser("db", help="schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply every migration")
    db.add_parser("check", help="exit 1 when the schema is not up to date")

    agents = sub.add_parser("agents").add_subparsers(dest="action", required=True)
    a = agents.add_parser("add", help="add or update an agent")
    a.add_argument("id")
    a.add_argument("--name")
    a.add_argument("--skills", help="skill=level,... (levels 0-10)")
    a.add_argument("--queues", help="queue,queue,...")
    a.add_argument("--capacity", help="phone=1,email=3")
    a.add_argument("--channels", help="email,phone")
    a = agents.add_parser("set-skills", help="replace an agent's skills")
    a.add_argument("id")
    a.add_argument("skills", help="skill=level,...")
    a = agents.add_parser("list")
    a.add_argument("--json", action="store_true")

    queues = sub.add_parser("queues").add_subparsers(dest="action", required=True)
    q = queues.add_parser("add", help="add or update a queue")
    q.add_argument("name")
    q.add_argument("--requires", help="skill=level,...")
    q.add_argument("--step", action="append",
                   help="escalation: SECONDS:skill=level,... ('-' drops a skill); repeatable")
    q.add_argument("--mode", choices=["push", "pull"], default="push")
    q.add_argument("--choice", choices=["longest_idle", "highest_skill"], default="longest_idle")
    q.add_argument("--priority", type=int, default=0)
    q.add_argument("--sl-target", help="phone=20,email=86400 (seconds)")
    q.add_argument("--offer-timeout", help="phone=20,email=60 (seconds)")
    q.add_argument("--wrap-up", type=float, help="seconds of wrap-up after a call")
    q.add_argument("--calendar", help="business calendar name")
    q.add_argument("--deadline", help="e-mail deadline: 'sliding 24h' or 'scheduled 12:00 +1'")
    q.add_argument("--dispositions",
                   help="the codes agents close tasks with: 'solved=Solved,callback=Call back "
                        "later' (none: any code)")
    q = queues.add_parser("list")
    q.add_argument("--json", action="store_true")

    tasks = sub.add_parser("tasks").add_subparsers(dest="action", required=True)
    t = tasks.add_parser("list")
    t.add_argument("--state")
    t.add_argument("--queue")
    t.add_argument("--limit", type=int, default=1000)
    t.add_argument("--json", action="store_true")
    t = tasks.add_parser("show", help="a task, its customer and its full trail of events")
    t.add_argument("id")
    t.add_argument("--json", action="store_true")

    cal = sub.add_parser("calendars").add_subparsers(dest="action", required=True)
    c = cal.add_parser("add", help="add or update a business calendar")
    c.add_argument("name")
    c.add_argument("--timezone", required=True, help="IANA zone, e.g. Europe/Paris")
    c.add_argument("--hours", required=True,
                   help="'mon-fri=09:00-12:30,13:30-18:00;sat=09:00-12:00' (24:00 allowed)")
    c.add_argument("--holidays", default="", help="ISO dates: 2026-12-25,2027-01-01")
    c = cal.add_parser("list")
    c.add_argument("--json", action="store_true")

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
    return p


def main(argv: list[str] | None = None) -> int:
    _install_reactor()
    from .edges import discover

    specs = discover()
    args = build_parser(specs).parse_args(argv)

    from sqlalchemy.exc import SQLAlchemyError

    from dispatcher.domain.errors import DomainError

    from . import config as config_mod

    if args.command == "simulate":
        return _simulate(args)
    try:
        config = config_mod.load(args.config, edges={n: s.settings for n, s in specs.items()})
    except config_mod.ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    url = args.database or config.database.url
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


def _simulate(args) -> int:
    from .simulate import simulate

    result = simulate(args.agents, args.arrivals_per_hour, args.aht, args.sl_seconds, args.tasks,
                      args.seed)
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    ec = result.erlang_c
    print(f"{result.tasks} tasks, {result.agents} agents, {result.arrivals_per_hour:g}/h, "
          f"AHT {result.aht_seconds:g} s, {result.simulated_seconds / 3600:.1f} h simulated")
    print(f"{'':22}{'simulated':>12}{'Erlang C':>12}")
    print(f"{'service level':22}{result.service_level:>12.3f}{ec['service_level']:>12.3f}")
    print(f"{'avg speed of answer':22}{result.asa_seconds:>11.2f}s{ec['asa_seconds']:>11.2f}s")
    print(f"{'probability of wait':22}{result.p_wait:>12.3f}{ec['p_wait']:>12.3f}")
    print(f"{'occupancy':22}{result.occupancy:>12.3f}")
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
        ("queues", "add"): admin.cmd_queues_add,
        ("queues", "list"): admin.cmd_queues_list,
        ("tasks", "list"): admin.cmd_tasks_list,
        ("tasks", "show"): admin.cmd_tasks_show,
        ("calendars", "add"): admin.cmd_calendars_add,
        ("calendars", "list"): admin.cmd_calendars_list,
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


if __name__ == "__main__":
    sys.exit(main())
