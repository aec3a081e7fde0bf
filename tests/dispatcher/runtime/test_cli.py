"""The `switchboard` command line, run as a user runs it (a subprocess) on a SQLite file:
schema commands, queues, agents and tasks, and clear errors without tracebacks."""

from __future__ import annotations

import json
import re
from argparse import Namespace
from dataclasses import dataclass
from datetime import datetime

import pytest
from twisted.internet.defer import ensureDeferred

from dispatcher.domain.errors import DomainError
from dispatcher.domain.tasks import Channel
from dispatcher.runtime import admin
from dispatcher.service.intake import email_identity
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
    assert UPGRADE_HINT in before.err
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
    assert "queue support saved" in r.out
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


def test_stale_database_bad_url_and_bad_configuration(url, tmp_path):
    """Refusals that come before any work: each says what is wrong, none with a traceback."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nhttp_port = "x"\n[log]\nlevel = "LOUD"\n[nope]\n',
                   encoding="utf-8")
    nowhere = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"

    stale, unreachable, config = run_many([
        ["--database", url, "agents", "list"],
        ["--database", nowhere, "agents", "list"],
        ["--config", str(bad), "--database", url, "agents", "list"],
    ], cwd=tmp_path)

    assert stale.code == 1 and UPGRADE_HINT in stale.err, stale.err
    assert unreachable.code != 0 and unreachable.err.startswith("error: database"), unreachable.err
    assert config.code == 3
    for fragment in ("[server] http_port", "[log] level", "[nope]"):
        assert fragment in config.err
    for r in (stale, unreachable, config):
        no_traceback(r)


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
        assert TASK_FIELDS <= set(row), row
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
    assert "why:" in r.out and "longest_idle" in r.out

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


@dataclass
class _Storage:
    """What the admin commands use of `app.Storage`."""

    store: object


def admin_run(db: str, command, **args):
    """Run one `admin.cmd_*` on a SqlStore, as the CLI would after parsing `args`."""
    w = wire(db)
    try:
        return w.wait(ensureDeferred(command(_Storage(w.store), Namespace(**args))))
    finally:
        w.close()


AGENT_ARGS = dict(id="bob", name=None, skills="", queues="", capacity=None, channels=None)
QUEUE_ARGS = dict(name="sales", requires=None, step=None, mode="push", choice="longest_idle",
                  priority=0, sl_target=None, offer_timeout=None, wrap_up=None, calendar=None,
                  deadline=None, dispositions=None)


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        (admin.cmd_agents_add, {"channels": "email,fax"}, "unknown channel 'fax'"),
        (admin.cmd_agents_add, {"capacity": "phone=-1"}, "capacity for phone must be >= 0"),
        (admin.cmd_agents_add, {"capacity": "fax=1"}, "expected phone=N or email=N"),
        (admin.cmd_agents_add, {"skills": "support"}, "expected skill=level"),
        (admin.cmd_agents_set_skills, {"id": "nobody", "skills": "support=1"}, "no such agent"),
        (admin.cmd_queues_add, {"step": ["60"]}, "expected SECONDS:skill=level"),
        (admin.cmd_queues_add, {"step": ["-5:x=1"]}, "0 s or later"),
        (admin.cmd_queues_add, {"requires": "x=abc"}, "level must be a whole number"),
        (admin.cmd_queues_add, {"deadline": "soon"}, "unknown deadline rule"),
        (admin.cmd_queues_add, {"sl_target": "phone=abc"}, "expected phone=N or email=N"),
        (admin.cmd_queues_add, {"dispositions": "solved"}, "expected code=Label"),
        (admin.cmd_queues_add, {"dispositions": "no good=Label"}, "disposition code 'no good'"),
        (admin.cmd_queues_add, {"dispositions": "solved="}, "the label must be"),
        (admin.cmd_queues_add, {"dispositions": "a=A,a=B"}, "listed twice"),
    ],
)
def test_admin_commands_refuse_bad_values_and_store_nothing(db, command, args, message):
    defaults = AGENT_ARGS if command is not admin.cmd_queues_add else QUEUE_ARGS
    with pytest.raises(DomainError, match=re.escape(message)):
        admin_run(db, command, **{**defaults, **args})
    assert stored(db, "list_agents") == []
    assert stored(db, "list_queues") == []


def test_admin_agent_capacity_and_channels(db):
    admin_run(db, admin.cmd_queues_add, **{**QUEUE_ARGS, "name": "support"})
    admin_run(db, admin.cmd_agents_add, **{**AGENT_ARGS, "queues": "support",
                                           "capacity": "email=5", "channels": "email"})
    [agent] = stored(db, "list_agents")
    assert agent.capacity[Channel.EMAIL] == 5 and agent.capacity[Channel.PHONE] == 1
    assert agent.channels == {Channel.EMAIL}
