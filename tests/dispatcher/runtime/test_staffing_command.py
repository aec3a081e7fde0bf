"""The commands of scenarios (dispatcher/runtime/staffing_command.py, staffing_report.py), run
as users run them: `switchboard staffing` and `switchboard simulate --scenario` on the example
in docs/, their JSON, their HTML report, and one-line errors (exit 2) for a bad file."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.dispatcher.runtime.running import base_env, run

EXAMPLE = str(Path(__file__).parents[3] / "docs" / "scenarios" / "blended-centre.toml")


def test_staffing_on_the_example_prints_the_plan_and_its_check(tmp_path):
    r = run("staffing", EXAMPLE, cwd=tmp_path, env=base_env())
    assert r.code == 0, r.err
    assert "staffing for 'blended support centre'" in r.out
    assert re.search(r"^08:00\s+\d+\s+\d+\s+[\d.]+\s+[\d.]+$", r.out, re.M)
    assert re.search(r"^support\s+phone\s+answered within 20 s\s+0\.800\s+0\.\d{3}\s+(met|NOT MET)$",
                     r.out, re.M)
    assert "agent-hours a day" in r.out
    assert not list(tmp_path.iterdir())  # no database, no file left behind


def test_staffing_json_and_html(tmp_path):
    page = tmp_path / "staffing.html"
    r = run("staffing", EXAMPLE, "--json", "--sl", "0.9", "--within", "15", "--html", str(page),
            cwd=tmp_path, env=base_env())
    assert r.code == 0, r.err
    answer = json.loads(r.out)  # one object, nothing else on stdout
    assert {"intervals", "verdicts", "simulated", "agent_hours_per_day"} <= set(answer)
    phone = next(v for v in answer["verdicts"] if v["channel"] == "phone")
    assert phone["target"] == 0.9 and phone["figure"] == "answered within 15 s"
    assert answer["intervals"][0]["starts"] == "08:00"
    assert all(row["agents"] >= row["call_agents"] for row in answer["intervals"])
    text = page.read_text()
    assert text.count("<svg") == 4 and "<script" not in text and "http" not in text
    assert "blended support centre" in text


def test_simulate_a_scenario_text_and_json(tmp_path):
    r = run("simulate", "--scenario", EXAMPLE, cwd=tmp_path, env=base_env())
    assert r.code == 0, r.err
    assert "blended support centre: 6 agents, 3 day(s) simulated" in r.out
    assert re.search(r"^all\s+support\s+phone\s+\d+\s+\d+\s+\d+\s+0\.\d{3}", r.out, re.M)
    r = run("simulate", "--scenario", EXAMPLE, "--json", "--seed", "3", cwd=tmp_path,
            env=base_env())
    assert r.code == 0, r.err
    result = json.loads(r.out)
    assert result["agents"] == 6 and result["days"] == 3
    assert {t["channel"] for t in result["totals"]} == {"phone", "email"}
    assert len(result["per_day"]) == 6 and result["intervals"]


def test_a_bad_scenario_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[queues]]\nname = "q"\nsl_seconds = { phone = -5 }\n')
    errors = []
    for args in (("staffing", str(bad)), ("simulate", "--scenario", str(tmp_path / "no.toml")),
                 ("staffing", EXAMPLE, "--sl", "2")):
        r = run(*args, cwd=tmp_path, env=base_env())
        assert r.code == 2, (args, r.out, r.err)
        assert r.err.startswith("error: ") and r.err.count("\n") == 1, r.err
        assert r.out == ""
        errors.append(r.err)
    assert "queues[0].sl_seconds.phone: a number at least 0 is needed, got -5" in errors[0]
    assert "no.toml: No such file or directory" in errors[1]
    assert "--sl must be a share in (0, 1], got 2" in errors[2]


def test_the_same_seed_gives_the_same_run_in_any_process(tmp_path):
    """Python's hash seed changes set order from one process to the next; the router breaks
    ties between equally idle agents in set order, so agents signing in together are a
    microsecond apart (centre.py) and a run depends only on its seed."""
    outs = []
    for hash_seed in ("0", "1"):
        r = run("simulate", "--scenario", EXAMPLE, "--json", cwd=tmp_path,
                env=base_env(PYTHONHASHSEED=hash_seed))
        assert r.code == 0, r.err
        outs.append(json.loads(r.out)["totals"])
    assert outs[0] == outs[1]
