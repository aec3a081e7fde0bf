"""`switchboard categories ...`: run as a user runs it (a subprocess, in a few parallel rounds:
most of a run is the interpreter starting) on a SQLite file, and the rule commands in process
on the same wiring the storage suites use. Categories and rules are checked before they are
stored and listed in evaluation order; `train` imports labelled examples and reports the
cross-validated accuracy; a broken examples file is reported line by line."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import pytest
from twisted.internet.defer import ensureDeferred

from admin import categories as cli
from dispatcher.domain.errors import InvalidValue
from dispatcher.storage import schema
from dispatcher.storage.codification import SqlCodificationStore
from tests.admin.context import command_context
from tests.dispatcher.runtime.running import base_env, run, run_many
from tests.dispatcher.storage.wiring import wire

DATA = (Path(__file__).resolve().parents[1] / "dispatcher" / "service" / "data"
        / "codification_mails.json")


def test_categories_and_training_from_the_command_line(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    schema.upgrade(url)
    examples = tmp_path / "examples.jsonl"
    mails = json.loads(DATA.read_text())["mails"]
    examples.write_text("".join(json.dumps({"subject": s, "body": b, "category": c}) + "\n"
                                for s, b, c in mails))
    db = ["--database", url]
    assert run(*db, "queues", "add", "accounts", cwd=tmp_path, env=base_env()).code == 0
    added, unknown, regex, trained = run_many([
        [*db, "categories", "add", "billing", "--queue", "accounts", "--priority", "40",
         "--skills", "billing=3", "--attribute", "vip=no"],
        [*db, "categories", "add", "x", "--queue", "nowhere"],
        [*db, "categories", "rule-add", "x", "--field", "subject", "--pattern", "("],
        [*db, "categories", "train", "--file", str(examples)],
    ], cwd=tmp_path, env=base_env())
    assert added.code == 0, added.err
    assert unknown.code != 0 and "nowhere" in unknown.err and "Traceback" not in unknown.err
    assert regex.code != 0 and "regular expression" in regex.err
    assert trained.code == 0, trained.err
    assert f"imported {len(mails)} examples" in trained.out
    assert float(trained.out.split("accuracy ")[1].split(";")[0]) >= 0.8
    listed = run(*db, "categories", "list", "--json", cwd=tmp_path, env=base_env())
    data = json.loads(listed.out)
    assert data["categories"] == [{"name": "billing", "queue": "accounts", "priority": 40,
                                   "skills": {"billing": 3}, "attributes": {"vip": "no"},
                                   "description": ""}]
    assert data["rules"] == [] and data["examples"] == len(mails)


def test_rules_in_process(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'rules.db'}"
    schema.upgrade(url)
    w = wire(url)
    codes = SqlCodificationStore(w.pool, w.commit)
    context = command_context(w, codes=codes)

    def cmd(fn, **kw):
        return w.wait(ensureDeferred(fn(context, Namespace(**kw))))

    try:
        rule = dict(match="keywords", disabled=False)
        assert cmd(cli.cmd_categories_rule_add, category="billing", field="subject",
                   pattern="invoice, refund", position=20, **rule) == 0
        assert cmd(cli.cmd_categories_rule_add, category="vip", field="sender",
                   pattern="bigcorp", position=10, **rule) == 0
        with pytest.raises(InvalidValue):
            cmd(cli.cmd_categories_rule_add, category="x", field="headers", pattern="a",
                position=0, **rule)
        assert [r.category for r in w.wait(codes.list_rules())] == ["vip", "billing"]
        assert cmd(cli.cmd_categories_rule_remove, id=2) == 0
        assert cmd(cli.cmd_categories_rule_remove, id=2) == 1
        assert cmd(cli.cmd_categories_list, json=False) == 0
        assert "'invoice, refund' -> billing" in capsys.readouterr().out
    finally:
        w.close()


def test_a_broken_examples_file_is_reported_line_by_line(tmp_path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "x"}\nnot json\n{"category": "ok", "text": "fine"}\n')
    with pytest.raises(InvalidValue) as refused:
        cli.read_examples(str(broken), 0.0)
    assert "line 1" in str(refused.value) and "line 2" in str(refused.value)
    assert "line 3" not in str(refused.value)
