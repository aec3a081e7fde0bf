"""The admin edge as the runtime loads it (admin/plugin.py): its commands come from the
installed edge whether `[admin] enabled` says so or not, run on the database without making a
token secret (only the console's `token` needs one), and go through the same parser as before
(help order and names kept)."""

from __future__ import annotations

import sqlite3

import pytest

from admin.plugin import EDGE
from dispatcher.runtime.cli import build_parser
from dispatcher.runtime.edges import discover
from dispatcher.storage import schema
from tests.dispatcher.runtime.running import base_env, run


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    schema.upgrade(url)
    return url


def test_the_runtime_finds_the_admin_edge_and_its_commands_come_first():
    specs = discover()
    assert specs["admin"] is EDGE
    parser = build_parser(specs)
    sub = next(a for a in parser._actions if a.dest == "command")
    names = list(sub.choices)
    assert names[:6] == ["serve", "demo", "simulate", "staffing", "replay", "db"]
    assert names[6:] == ["agents", "queues", "tasks", "tokens", "calendars", "phones", "report",
                         "answers", "kb", "categories", "accounts", "token"]


def test_commands_run_with_the_edge_disabled_and_make_no_token_secret(db, tmp_path):
    env = base_env(SWITCHBOARD_ADMIN_ENABLED="false")
    added = run("--database", db, "queues", "add", "support", cwd=tmp_path, env=env)
    assert added.code == 0 and "queue support added" in added.out, added.err
    listed = run("--database", db, "queues", "list", "--json", cwd=tmp_path, env=env)
    assert listed.code == 0 and '"name": "support"' in listed.out, listed.err
    revoked = run("--database", db, "token", "revoke", "--subject", "ann", cwd=tmp_path, env=env)
    assert revoked.code == 0 and "revoked every token of ann" in revoked.out, revoked.err
    with sqlite3.connect(tmp_path / "admin.db") as con:
        assert con.execute("SELECT count(*) FROM secrets").fetchone() == (0,)
