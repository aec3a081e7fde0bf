"""The `switchboard` command line, run as a user runs it (a subprocess) on a SQLite file:
schema commands, queues, agents and tasks, and clear errors without tracebacks."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
from datetime import datetime
from importlib import metadata
from pathlib import Path

import pytest
import sqlalchemy as sa

from dispatcher.domain.tasks import Channel
from dispatcher.runtime.cli import build_parser
from dispatcher.runtime.edges import discover
from dispatcher.service.intake import email_identity, phone_identity
from dispatcher.storage import schema
from tests.dispatcher.runtime.running import base_env, run, run_many, sql_stack
from tests.dispatcher.service.stacks import T0, support_queue
from tests.dispatcher.storage.wiring import wire

UPGRADE_HINT = "switchboard db upgrade"
TASK_FIELDS = {"id", "channel", "queue", "state", "customer", "created_at", "deadline"}


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'switchboard.db'}"


@pytest.fixture
def db(url) -> str:
    """A database at the head schema."""
    schema.upgrade(url)
    return url


def sb(url: str, *args: str, tmp_path, **env: str):
    return run("--database", url, *args, cwd=tmp_path, env=base_env(**env))


def no_traceback(r) -> None:
    assert "Traceback" not in r.err and "Traceback" not in r.out, r.err


def stored(url: str, what: str):
    w = wire(url)
    try:
        return w.wait(getattr(w.store, what)())
    finally:
        w.close()


def test_db_check_names_the_upgrade_command_then_upgrade_fixes_it(url, tmp_path):
    before = sb(url, "db", "check", tmp_path=tmp_path)
    assert before.code == 1
    assert UPGRADE_HINT in before.err and "no database at" in before.err
    assert not (tmp_path / "switchboard.db").exists()  # checking made nothing
    no_traceback(before)

    upgraded = sb(url, "db", "upgrade", tmp_path=tmp_path)
    assert upgraded.code == 0, upgraded.err
    assert schema.head() in upgraded.out

    after = sb(url, "db", "check", tmp_path=tmp_path)
    assert after.code == 0, after.err
    assert "up to date" in after.out


def test_queues_and_agents(db, tmp_path):
    r = sb(db, "queues", "add", "support", "--requires", "support=3", "--step", "60:support=1",
           "--deadline", "sliding 24h", tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert "queue support added" in r.out and "within a few seconds" in r.out
    r = sb(db, "agents", "add", "alice", "--skills", "support=5", "--queues", "support",
           tmp_path=tmp_path)
    assert r.code == 0, r.err
    r = sb(db, "agents", "set-skills", "alice", "support=7", tmp_path=tmp_path)
    assert r.code == 0, r.err

    queues, agents = run_many([["--database", db, "queues", "list", "--json"],
                               ["--database", db, "agents", "list", "--json"]], cwd=tmp_path)

    assert queues.code == 0, queues.err
    [queue] = json.loads(queues.out)
    assert queue["name"] == "support"
    assert queue["requirement"] == {"support": 3}
    assert queue["steps"] == [{"after_seconds": 60.0, "requirement": {"support": 1}}]
    assert queue["deadline_rule"] == "sliding 24h"
    assert queue["mode"] == "push"
    assert agents.code == 0, agents.err
    [agent] = json.loads(agents.out)
    assert agent["id"] == "alice"
    assert agent["skills"] == {"support": 7}
    assert agent["queues"] == ["support"]
    assert agent["capacity"] == {"email": 3, "phone": 1}
    assert agent["channels"] == ["email", "phone"]


def test_queue_dispositions_are_saved_and_listed(db, tmp_path):
    r = sb(db, "queues", "add", "support", "--dispositions",
           "solved=Solved, callback=Call back later", tmp_path=tmp_path)
    assert r.code == 0, r.err
    text, listed = run_many([["--database", db, "queues", "list"],
                             ["--database", db, "queues", "list", "--json"]], cwd=tmp_path)
    assert "dispositions=solved=Solved,callback=Call back later" in text.out, text.out
    [queue] = json.loads(listed.out)
    assert queue["dispositions"] == [{"code": "solved", "label": "Solved"},
                                     {"code": "callback", "label": "Call back later"}]
    [stored_queue] = stored(db, "list_queues")
    assert stored_queue.dispositions == (("solved", "Solved"), ("callback", "Call back later"))


ERRORS = {
    "unknown queue": (["agents", "add", "bob", "--skills", "support=5", "--queues",
                       "support,nowhere"], "unknown queue(s): nowhere"),
    "level 11": (["agents", "add", "bob", "--skills", "support=11", "--queues", "support"],
                 "level must be an integer 0-10"),
    "bad step": (["queues", "add", "sales", "--step", "soon:sales=1"],
                 "escalation step 'soon:sales=1'"),
}


def test_errors_are_clear_and_store_nothing(db, tmp_path):
    """Refused before (level, step) or after (unknown queue) the first database call."""
    setup = wire(db)
    try:
        setup.wait(setup.store.put_queue(support_queue()))
    finally:
        setup.close()

    runs = run_many([["--database", db, *args] for args, _ in ERRORS.values()], cwd=tmp_path)

    for (case, (_, message)), r in zip(ERRORS.items(), runs, strict=True):
        assert r.code != 0, case
        assert message in r.err, (case, r.err)
        assert r.err.strip().startswith("error:"), (case, r.err)
        no_traceback(r)
    assert stored(db, "list_agents") == []
    assert [q.name for q in stored(db, "list_queues")] == ["support"]


def test_stale_missing_database_and_bad_configuration(url, tmp_path):
    """Refusals that come before any work: each says what is wrong, none with a traceback, and
    none leaves a database file behind."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nhttp_port = "x"\n[log]\nlevel = "LOUD"\n[nope]\n',
                   encoding="utf-8")
    nowhere = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a file without the schema: stale

    stale, missing, unreachable, config = run_many([
        ["--database", f"sqlite:///{empty}", "agents", "list"],
        ["--database", url, "agents", "list"],
        ["--database", nowhere, "agents", "list"],
        ["--config", str(bad), "--database", url, "agents", "list"],
    ], cwd=tmp_path)

    assert stale.code == 1 and UPGRADE_HINT in stale.err, stale.err
    assert missing.code == 2 and missing.err.startswith("error: no database at"), missing.err
    assert UPGRADE_HINT in missing.err
    assert unreachable.code == 2 and "no database at" in unreachable.err, unreachable.err
    assert config.code == 3
    for fragment in ("[server] http_port", "[log] level", "[nope]"):
        assert fragment in config.err
    for r in (stale, missing, unreachable, config):
        no_traceback(r)
    assert not (tmp_path / "switchboard.db").exists() and not (tmp_path / "no").exists()


def test_a_database_url_whose_driver_is_missing_is_refused_with_what_to_install(tmp_path):
    """psycopg 3 not installed (a package of that name that fails to import stands in front
    of the real one), a driver SQLAlchemy does not know: each command says so and what to do,
    names no password, leaves no traceback and touches nothing."""
    blocked = tmp_path / "blocked"
    (blocked / "psycopg").mkdir(parents=True)
    (blocked / "psycopg" / "__init__.py").write_text(
        'raise ImportError("psycopg is blocked by this test")\n', encoding="utf-8")
    env = base_env(PYTHONPATH=str(blocked))
    psycopg3 = "postgresql+psycopg://sb:s3cret@127.0.0.1:5432/sb"
    unknown = "postgresql+nosuchdriver://sb:s3cret@127.0.0.1:5432/sb"
    serve, check, listing, other = run_many([
        ["--database", psycopg3, "serve"],
        ["--database", psycopg3, "db", "check"],
        ["--database", psycopg3, "agents", "list"],
        ["--database", unknown, "db", "upgrade"],
    ], cwd=tmp_path, env=env)
    assert serve.code == 1 and serve.err.startswith("switchboard: database: cannot use"), serve.err
    assert check.code == 1 and listing.code == 2 and other.code == 1, (check, listing, other)
    for r in (serve, check, listing):
        assert "'postgresql+psycopg'" in r.err and "is not installed" in r.err, r.err
        assert 'pip install ".[psycopg3]"' in r.err, r.err
    assert "unknown database or driver 'postgresql+nosuchdriver'" in other.err, other.err
    for r in (serve, check, listing, other):
        no_traceback(r)
        assert "s3cret" not in r.err + r.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked"]


READ_COMMANDS = [["tasks", "list"], ["tasks", "show", "SB-000001"], ["agents", "list"],
                 ["queues", "list"], ["calendars", "list"], ["accounts", "list"],
                 ["phones", "list"], ["answers", "list"], ["kb", "list"],
                 ["categories", "list"], ["report", "--from", "2026-01-01", "--to", "2026-01-02"],
                 ["token", "--agent", "ann"]]


def test_no_command_but_db_upgrade_creates_a_database(tmp_path):
    """Run without --database in an empty folder, as a user trying things out does."""
    runs = run_many(READ_COMMANDS + [["queues", "add", "support"]], cwd=tmp_path)
    for args, r in zip(READ_COMMANDS + [["queues", "add"]], runs, strict=True):
        assert r.code == 2, (args, r.out, r.err)
        assert "no database at switchboard.db" in r.err and UPGRADE_HINT in r.err, (args, r.err)
        no_traceback(r)
    assert list(tmp_path.iterdir()) == []


def test_tasks_list_json(db, tmp_path):
    w, s = sql_stack(db)
    try:
        s.put_queue(support_queue(deadline_rule="sliding 24h"))
        s.put_agent("ann", 8)
        mail = s.wait(s.intake.submit(Channel.EMAIL, "support", email_identity("c@example.org")))
        s.advance(5)
        call = s.call()
        s.login("ann")  # offered the call: due in 20 s, the mail in 24 h
        s.settle()
    finally:
        w.close()

    r = sb(db, "tasks", "list", "--json", tmp_path=tmp_path)

    assert r.code == 0, r.err
    rows = json.loads(r.out)
    assert isinstance(rows, list) and len(rows) == 2
    by_id = {row["id"]: row for row in rows}
    assert set(by_id) == {mail.id, call.id}
    for row in rows:
        assert set(row) >= TASK_FIELDS, row
        assert row["queue"] == "support"
    assert by_id[mail.id]["channel"] == "email"
    assert by_id[call.id]["channel"] == "phone"
    assert by_id[mail.id]["customer"] == mail.customer_id
    assert datetime.fromisoformat(by_id[mail.id]["created_at"]).timestamp() == T0
    assert datetime.fromisoformat(by_id[mail.id]["deadline"]).timestamp() == T0 + 86400
    assert by_id[call.id]["deadline"] is None
    assert {row["state"] for row in rows} == {"queued", "offered"}

    r = sb(db, "tasks", "list", "--json", "--state", "offered", tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert [row["state"] for row in json.loads(r.out)] == ["offered"]


def test_tasks_show_prints_the_trail_with_the_explanation(db, tmp_path):
    w, s = sql_stack(db)
    try:
        s.put_queue(support_queue())
        s.put_agent("ann", 8)
        s.login("ann")
        mail = s.wait(s.intake.submit(Channel.EMAIL, "support", email_identity("c@example.org"),
                                      "Chris"))
        s.settle()
    finally:
        w.close()

    r = sb(db, "tasks", "show", mail.id, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert mail.id in r.out and "Chris" in r.out and "email:c@example.org" in r.out
    kinds = re.findall(r"(task\.\w+|offer\.\w+)", r.out)
    assert kinds[:3] == ["task.created", "task.queued", "task.offered"], r.out
    assert "why: offered to ann (longest idle of 1 available out of 1 eligible)" in r.out
    assert "system -> ann" in r.out

    r = sb(db, "tasks", "show", mail.id, "--json", tmp_path=tmp_path)
    trail = json.loads(r.out)["trail"]
    assert [e["kind"] for e in trail][:3] == ["task.created", "task.queued", "task.offered"]
    assert trail[2]["agent"] == "ann"

    r = sb(db, "tasks", "show", "nope", tmp_path=tmp_path)
    assert r.code != 0 and "no such task" in r.err
    no_traceback(r)


def test_calendars_and_a_queue_that_names_one(db, tmp_path):
    r = sb(db, "queues", "add", "support", "--calendar", "office", tmp_path=tmp_path)
    assert r.code != 0 and "unknown calendar" in r.err
    no_traceback(r)

    r = sb(db, "calendars", "add", "office", "--timezone", "Europe/Paris",
           "--hours", "mon-fri=09:00-12:30,13:30-18:00;sat=09:00-12:00",
           "--holidays", "2026-12-25", tmp_path=tmp_path)
    assert r.code == 0, r.err
    r = sb(db, "calendars", "list", "--json", tmp_path=tmp_path)
    (cal,) = json.loads(r.out)
    assert cal["hours"]["wed"] == [["09:00", "12:30"], ["13:30", "18:00"]]
    assert cal["hours"]["sat"] == [["09:00", "12:00"]] and "sun" not in cal["hours"]
    assert cal["holidays"] == ["2026-12-25"]

    r = sb(db, "queues", "add", "support", "--calendar", "office", "--deadline",
           "scheduled 12:00 +1", tmp_path=tmp_path)
    assert r.code == 0, r.err

    for bad in ("mon-fri=9-17", "funday=09:00-10:00", "mon=17:00-09:00"):
        r = sb(db, "calendars", "add", "bad", "--timezone", "UTC", "--hours", bad,
               tmp_path=tmp_path)
        assert r.code != 0, bad
        no_traceback(r)
    r = sb(db, "calendars", "add", "bad", "--timezone", "Mars/Olympus", "--hours",
           "mon=09:00-10:00", tmp_path=tmp_path)
    assert r.code != 0
    no_traceback(r)


# ---------------------------------------------------------------------- the commands in-process


# ---------------------------------------------------------------------- help, version, README


def all_parsers(parser, path=()):
    """(command path, parser) of every command and subcommand."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from all_parsers(child, (*path, name))


def test_every_command_and_option_has_help_and_shows_its_default():
    parser = build_parser(discover())
    for path, p in all_parsers(parser):
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in action._choices_actions}
                missing = sorted(n for n in action.choices if not helps.get(n))
                assert not missing, (path, missing)
                continue
            assert action.help, (path, action.option_strings or action.dest)
    text = parser.format_help()
    assert "offered to blended agents." in text  # the description is whole
    assert "within a few seconds" in text
    queues_add = " ".join(dict(all_parsers(parser))[("queues", "add")].format_help().split())
    assert "(default: push)" in queues_add and "(default: phone=20,email=60)" in queues_add
    assert "(default: None)" not in queues_add


def test_version_and_help_from_the_command(tmp_path):
    version, helped = run_many([["--version"], ["--help"]], cwd=tmp_path)
    assert version.code == 0 and version.out.strip() == f"switchboard {metadata.version('switchboard')}"
    assert helped.code == 0 and "COMMAND" in helped.out and "simulate" in helped.out
    assert list(tmp_path.iterdir()) == []


README = Path(__file__).resolve().parents[3] / "README.md"


def readme_commands() -> list[list[str]]:
    """The `switchboard ...` lines of README's command list, with their continuation lines."""
    text = README.read_text(encoding="utf-8")
    block = text.split("## Commands", 1)[1].split("```", 2)[1]
    commands: list[list[str]] = []
    for line in block.splitlines():
        command = re.split(r"\s{2,}", line.strip())[0]  # what follows is the description
        if line.startswith("switchboard "):
            commands.append(command.split())
        elif line.startswith(" ") and commands and command.startswith("["):
            commands[-1].extend(command.split())
    return commands


def test_readme_lists_only_commands_and_options_that_exist():
    parsers = dict(all_parsers(build_parser(discover())))
    listed = readme_commands()
    assert len(listed) >= 20
    for words in listed:
        path: tuple[str, ...] = ()
        for word in words[1:]:
            if (*path, word) not in parsers:
                break
            path = (*path, word)
        assert path or all(w.startswith("-") or w == "|" for w in words[1:]), words
        # `accounts list [--json] | disable ID | remove ID`: the alternatives exist too
        for before, word in zip(words, words[1:], strict=False):
            if before == "|" and not word.startswith("-"):
                assert (*path[:-1], word) in parsers or (*path, word) in parsers, (words, word)
        family = [q for q in parsers if q[:1] == path[:1]] if path else [()]
        known = {o for q in family for a in parsers[q]._actions for o in a.option_strings}
        for option in re.findall(r"--[a-z][a-z-]*", " ".join(words)):
            assert option in known, (words, option)


def test_readme_commands_run_as_printed(db, tmp_path):
    """A sample of README's commands, exactly as printed (placeholders filled), on a database."""
    calendar = sb(db, "calendars", "add", "office", "--timezone", "Europe/Paris", "--hours",
                  "mon-fri=09:00-12:30,13:30-18:00;sat=09:00-12:00", "--holidays",
                  "2026-12-25", tmp_path=tmp_path)
    assert calendar.code == 0, calendar.err
    steps = [
        ["queues", "add", "support", "--requires", "support=3", "--step", "60:support=1",
         "--mode", "push", "--choice", "longest_idle", "--priority", "0", "--sl-target",
         "phone=20,email=86400", "--offer-timeout", "phone=20,email=60", "--wrap-up", "30",
         "--calendar", "office", "--deadline", "sliding 24h", "--dispositions",
         "solved=Solved,callback=Call back later"],
        ["agents", "add", "ann", "--name", "Ann", "--skills", "support=5", "--queues", "support",
         "--capacity", "phone=1,email=3", "--channels", "email,phone", "--attribute",
         "languages=fr,en", "--interruptions", "email:email; phone:"],
        ["queues", "add", "hotline", "--expression",
         'languages HAS task.language AND tier != "trainee"', "--reserve", "2"],
        ["agents", "set-skills", "ann", "support=7"],
        ["tasks", "list", "--state", "queued", "--queue", "support", "--json"],
    ]
    for args in steps:
        r = sb(db, *args, tmp_path=tmp_path)
        assert r.code == 0, (args, r.err)


# ---------------------------------------------------------------------- tasks list


def test_tasks_list_newest_first_with_request_subject_customer_and_age(db, tmp_path):
    w, s = sql_stack(db)
    try:
        s.put_queue(support_queue())
        first = s.wait(s.intake.submit(Channel.EMAIL, "support", email_identity("c@example.org"),
                                       "Chris Client",
                                       attributes={"request": "SB-000042",
                                                   "subject": "Where is my parcel?"}))
        s.advance(60)
        call = s.call(identity=phone_identity("+33155501234"), customer_name="Dana")
        s.settle()
    finally:
        w.close()

    text, listed, wrong_queue, wrong_state, nothing = run_many([
        ["--database", db, "tasks", "list"],
        ["--database", db, "tasks", "list", "--json"],
        ["--database", db, "tasks", "list", "--queue", "nosuch"],
        ["--database", db, "tasks", "list", "--state", "bogus"],
        ["--database", db, "tasks", "list", "--state", "completed"],
    ], cwd=tmp_path)

    assert text.code == 0, text.err
    lines = text.out.splitlines()
    assert lines[0].split()[:3] == ["REQUEST", "CHANNEL", "QUEUE"]
    assert "+33155501234" in lines[1] and "Dana" in lines[1]  # the call: newest first
    assert lines[2].startswith("SB-000042") and "Chris Client" in lines[2]
    assert "Where is my parcel?" in lines[2]
    assert re.search(r"\b\d+d\d+h\b|\b\d+h\d\dm\b|\b\d+m\b|\b\d+s\b", lines[2])
    rows = json.loads(listed.out)
    assert [r["id"] for r in rows] == [call.id, first.id]
    assert rows[1]["request"] == "SB-000042" and rows[1]["subject"] == "Where is my parcel?"
    assert rows[1]["customer_name"] == "Chris Client" and rows[0]["caller"] == "+33155501234"
    assert rows[1]["age_seconds"] >= rows[0]["age_seconds"] + 60
    assert wrong_queue.code == 2 and "no such queue: nosuch (known: support)" in wrong_queue.err
    assert wrong_state.code == 2 and "invalid choice: 'bogus'" in wrong_state.err
    assert nothing.code == 0 and nothing.out.strip() == "no tasks with state=completed yet"
    for r in (wrong_queue, wrong_state):
        no_traceback(r)


def test_empty_lists_say_so(db, tmp_path):
    runs = run_many([["--database", db, *args] for args in (
        ["tasks", "list"], ["agents", "list"], ["queues", "list"], ["calendars", "list"],
        ["accounts", "list"], ["phones", "list"], ["answers", "list"], ["kb", "list"])],
        cwd=tmp_path)
    for r in runs:
        assert r.code == 0, r.err
        assert r.out.startswith("no ") and " yet" in r.out, r.out


# ---------------------------------------------------------------------- remove, disable, audit


def agent_log(url: str) -> list[tuple[str, str, str, dict]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            got = conn.execute(sa.text(
                "select kind, agent_id, actor, data from agent_events order by id")).all()
    finally:
        engine.dispose()
    return [(k, a, actor, json.loads(d) if isinstance(d, str) else d) for k, a, actor, d in got]


def test_configuration_changes_are_audited_and_removal_waits_for_open_work(db, tmp_path):
    for args in (["calendars", "add", "office", "--timezone", "UTC", "--hours",
                  "mon-fri=09:00-17:00"],
                 ["queues", "add", "support", "--calendar", "office"],
                 ["agents", "add", "ann", "--skills", "support=5", "--queues", "support"],
                 ["agents", "set-skills", "ann", "support=7"]):
        r = sb(db, *args, tmp_path=tmp_path)
        assert r.code == 0, (args, r.err)
    w, s = sql_stack(db)
    try:
        s.wait(s.assignment.restore(s.wait(s.store.load_state())))
        s.login("ann")
        call = s.call()
        s.wait(s.sessions.accept("ann", s.last_offer("ann").id))
        s.settle()
    finally:
        w.close()

    refused = run_many([["--database", db, *args] for args in (
        ["queues", "remove", "support"], ["queues", "disable", "support"],
        ["agents", "remove", "ann"], ["agents", "disable", "ann"],
        ["queues", "remove", "nosuch"], ["agents", "disable", "nobody"])], cwd=tmp_path)
    for r in refused[:4]:
        assert r.code == 2 and "open task(s)" in r.err and call.id in r.err, r.err
        no_traceback(r)
    assert refused[4].code == 2 and "no such queue: nosuch" in refused[4].err
    assert refused[5].code == 2 and "no such agent: nobody" in refused[5].err

    w, s = sql_stack(db)
    try:
        s.wait(s.assignment.restore(s.wait(s.store.load_state())))
        s.login("ann")
        s.wait(s.sessions.complete("ann", call.id, "done"))
        s.settle()
    finally:
        w.close()
    for args, said in ((["agents", "disable", "ann"], "agent ann disabled"),
                       (["agents", "enable", "ann"], "agent ann enabled"),
                       (["queues", "disable", "support"], "queue support disabled"),
                       (["queues", "remove", "support"], "queue support removed (dropped "
                                                         "from ann)"),
                       (["agents", "remove", "ann"], "agent ann removed")):
        r = sb(db, *args, tmp_path=tmp_path)
        assert r.code == 0 and said in r.out and "within a few seconds" in r.out, (args, r.out, r.err)
    assert stored(db, "list_queues") == [] and stored(db, "list_agents") == []

    audit = [(k, who, actor) for k, who, actor, _ in agent_log(db)
             if actor == "operator"]
    assert audit == [
        ("calendar.changed", "operator", "operator"),
        ("queue.changed", "operator", "operator"),
        ("agent.added", "ann", "operator"),
        ("agent.changed", "ann", "operator"),  # set-skills
        ("agent.changed", "ann", "operator"),  # disable
        ("agent.changed", "ann", "operator"),  # enable
        ("queue.changed", "operator", "operator"),  # disable
        ("queue.removed", "operator", "operator"),
        ("agent.removed", "ann", "operator"),
    ]
    skills = [d for k, _, actor, d in agent_log(db) if k == "agent.changed" and "skills" in d]
    assert skills[0]["skills"] == {"support": 7}


def test_phones_categories_and_response_modes_are_audited_without_secrets(db, tmp_path):
    secret = tmp_path / "sip.secret"
    secret.write_text("s3cret-sip\n", encoding="utf-8")
    for args in (["queues", "add", "support"],
                 ["agents", "add", "ann", "--queues", "support"],
                 ["phones", "set", "ann", "--user", "ann", "--password-file", str(secret)],
                 ["categories", "add", "billing", "--queue", "support"],
                 ["categories", "rule-add", "billing", "--field", "subject", "--pattern",
                  "invoice"],
                 ["answers", "mode-set", "--queue", "support", "--mode", "suggested"],
                 ["answers", "review-share", "ann", "0.5"],
                 ["phones", "remove", "ann"]):
        r = sb(db, *args, tmp_path=tmp_path)
        assert r.code == 0, (args, r.err)
    changed = [(d["what"], d["action"]) for k, _, _, d in agent_log(db) if k == "config.changed"]
    assert changed == [("phone", "set"), ("category", "set"), ("category_rule", "added"),
                       ("response_mode", "set"), ("review_share", "set"), ("phone", "removed")]
    assert "s3cret" not in json.dumps(agent_log(db))


# ---------------------------------------------------------------------- simulate


def test_simulate_refuses_bad_inputs_and_says_when_a_queue_is_overloaded(tmp_path):
    zero, bad, overloaded, as_json = run_many([
        ["simulate", "--agents", "0"],
        ["simulate", "--aht", "-1", "--tasks", "0"],
        ["simulate", "--agents", "2", "--tasks", "300"],
        ["simulate", "--agents", "2", "--tasks", "300", "--json"],
    ], cwd=tmp_path)
    assert zero.code == 2 and zero.err.strip() == "error: --agents must be 1-10,000, got 0"
    assert bad.code == 2 and "--aht must be more than 0" in bad.err and "--tasks" in bad.err
    for r in (zero, bad):
        no_traceback(r)
    assert overloaded.code == 0, overloaded.err
    assert "inf" not in overloaded.out and "overloaded: 10.0 erlangs" in overloaded.out
    result = json.loads(as_json.out)  # strict JSON: no Infinity
    assert result["overloaded"] is True and result["erlang_c"]["asa_seconds"] is None
