"""`switchboard answers ...` and `switchboard kb ...`: once as a user runs them (subprocesses on
a SQLite file: import, export, list, a bad file), the rest in process on a SqlStore, as the CLI
runs each `cmd_*` after parsing: versions only where something changed, rules, review shares,
the review and deflection reports."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import ensureDeferred

from admin import answers as cli
from dispatcher.domain.errors import InvalidValue
from dispatcher.storage import schema
from dispatcher.storage.answers import SqlAnswerStore
from tests.admin.context import command_context
from tests.dispatcher.runtime.running import base_env, run, run_many
from tests.dispatcher.storage.wiring import wire

DATA = Path(__file__).resolve().parents[1] / "data" / "answers"


@pytest.fixture
def db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    schema.upgrade(url)
    return url


@pytest.mark.slow
def test_as_a_user_runs_it(db, tmp_path) -> None:
    r = run("--database", db, "answers", "import", str(DATA / "library.jsonl"), "--author",
            "sue", cwd=tmp_path, env=base_env())
    assert r.code == 0 and r.out.strip() == "20 created, 0 updated, 0 unchanged", r.err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok", "title": "T", "text": "x"}\nnope\n'
                   '{"id": "x", "title": "T", "text": "{{password}}"}\n')
    out = tmp_path / "export.jsonl"
    export, listed, refused = run_many([
        ["--database", db, "answers", "export", str(out)],
        ["--database", db, "answers", "list", "--json"],
        ["--database", db, "answers", "import", str(bad)],
    ], cwd=tmp_path, env=base_env())
    assert export.code == 0 and len(out.read_text().splitlines()) == 20
    assert [a["owner"] for a in json.loads(listed.out)] == ["sue"] * 20
    assert refused.code == 2 and "line 2" in refused.err and "line 3" in refused.err
    assert "Traceback" not in refused.err


def cmd(db: str, command: Any, capsys: Any = None, **args: Any) -> tuple[int, str]:
    if capsys:
        capsys.readouterr()  # only what this command prints
    w = wire(db)
    try:
        context = command_context(w, answers=SqlAnswerStore(w.pool, w.commit))
        code = w.wait(ensureDeferred(command(context, Namespace(**args))))
    finally:
        w.close()
    return code, capsys.readouterr().out if capsys else ""


def test_versions_only_where_something_changed(db, tmp_path, capsys) -> None:
    cmd(db, cli.cmd_answers_import, file=str(DATA / "library.jsonl"), author="sue")
    out = tmp_path / "x.jsonl"
    cmd(db, cli.cmd_answers_export, file=str(out), active=False)
    changed = [json.loads(x) for x in out.read_text().splitlines()]
    changed[0]["text"] += "\nP.S. thanks"
    out.write_text("".join(json.dumps(x) + "\n" for x in changed))
    capsys.readouterr()
    _, text = cmd(db, cli.cmd_answers_import, capsys, file=str(out), author="bob")
    assert text.strip() == "0 created, 1 updated, 19 unchanged"
    _, text = cmd(db, cli.cmd_answers_history, capsys, id=changed[0]["id"])
    assert [(v["version"], v["author"]) for v in map(json.loads, text.splitlines())] == [
        (1, "sue"), (2, "bob")]
    with pytest.raises(InvalidValue):
        cmd(db, cli.cmd_answers_history, id="nope")


def test_modes_shares_and_reports(db, tmp_path, capsys) -> None:
    cmd(db, cli.cmd_answers_mode_set, queue="support", category="billing", mode="automatic",
        threshold=0.4, review_share=0.1)
    _, text = cmd(db, cli.cmd_answers_mode_list, capsys, json=True)
    assert json.loads(text) == [{"queue": "support", "category": "billing", "mode": "automatic",
                                 "threshold": 0.4, "review_share": 0.1}]
    with pytest.raises(InvalidValue, match="threshold"):
        cmd(db, cli.cmd_answers_mode_set, queue="*", category="*", mode="automatic",
            threshold=2.0, review_share=0.0)
    cmd(db, cli.cmd_answers_mode_remove, queue="support", category="billing")
    with pytest.raises(InvalidValue):
        cmd(db, cli.cmd_answers_mode_remove, queue="support", category="billing")
    cmd(db, cli.cmd_answers_review_share, agent="ann", share="1")
    with pytest.raises(InvalidValue):
        cmd(db, cli.cmd_answers_review_share, agent="ann", share="lots")
    kb = tmp_path / "kb.jsonl"
    kb.write_text(json.dumps({"id": "kb-1", "question": "Sunday delivery?", "answer": "No.",
                              "category": "delivery"}) + "\n")
    capsys.readouterr()
    _, text = cmd(db, cli.cmd_kb_import, capsys, file=str(kb))
    assert text.strip() == "1 created, 0 updated"
    _, text = cmd(db, cli.cmd_kb_report, capsys, json=True)
    assert json.loads(text) == [{"article_id": "kb-1", "category": "delivery", "views": 0,
                                 "helped": 0, "not_helped": 0, "rate": None}]
    _, text = cmd(db, cli.cmd_kb_report, capsys, json=False)
    assert "delivery" in text and "kb-1" in text
    _, text = cmd(db, cli.cmd_answers_review_report, capsys, json=True)
    assert json.loads(text) == []
    _, text = cmd(db, cli.cmd_kb_list, capsys, json=True)
    assert json.loads(text)[0]["id"] == "kb-1"
