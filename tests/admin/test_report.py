"""`switchboard report` as a user runs it (a subprocess) on a SQLite file holding the scripted
day of the metrics tests, and `GET /report`, `/metrics`, `/healthz` of a running `switchboard
serve`: supervisor token 200, agent token 403, no token 401; Prometheus text with the live
figures."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from argparse import Namespace
from pathlib import Path

import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from admin.report import cmd_report
from dispatcher.service.ports import Changes
from dispatcher.storage import schema
from tests.dispatcher.domain.test_metrics import END, START, scripted_day
from tests.dispatcher.runtime.running import (
    base_env,
    free_port,
    run_many,
    switchboard_command,
)
from tests.dispatcher.service.test_reports import QUEUES
from tests.dispatcher.storage.wiring import wire

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
SECRET = "s" * 48


def make_day_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    schema.upgrade(url)
    w = wire(url)
    try:
        for q in QUEUES:
            w.wait(w.store.put_queue(q))
        w.wait(w.store.record(Changes(events=scripted_day())))
    finally:
        w.close()
    return url


@pytest.fixture(scope="module")
def day_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("day")


@pytest.fixture(scope="module")
def day_db(day_dir) -> str:
    """The scripted day in a SQLite file (read only by these tests: shared by the module)."""
    return make_day_db(day_dir)


def sb(url: str, *args: str, tmp_path):
    return run_many([["--database", url, *args]], cwd=tmp_path, env=base_env())[0]


def test_report_command_json_and_progress(day_db, tmp_path):
    r = sb(day_db, "report", "--from", "2026-01-01T08:00", "--to", "2026-01-01T18:00",
           "--format", "json", tmp_path=tmp_path)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["report"]["from_epoch"] == START and doc["report"]["to_epoch"] == END
    assert doc["period"]["queue"]["sales"]["service_level"] == pytest.approx(0.6)
    assert doc["period"]["channel"]["email"]["first_response_avg"] == pytest.approx(6300)
    assert "events in" in r.err  # progress and the final count on stderr
    assert "Traceback" not in r.err


def test_report_command_csv_to_a_file_and_errors(day_db, tmp_path):
    out = tmp_path / "day.csv"
    day = ["report", "--from", "2026-01-01T08:00", "--to", "2026-01-01T18:00"]
    csv_run, backwards, stale = run_many([
        ["--database", day_db, *day, "--queue", "sales", "--interval", "15m", "--format",
         "csv", "--output", str(out), "--quiet"],
        ["--database", day_db, "report", "--from", "2026-01-02", "--to", "2026-01-01"],
        ["--database", f"sqlite:///{tmp_path / 'empty.db'}", *day],
    ], cwd=tmp_path, env=base_env())
    assert csv_run.code == 0, csv_run.err
    assert csv_run.out == "" and csv_run.err == ""
    lines = out.read_text().splitlines()
    assert lines[0] == "from,to,scope,key,metric,value"
    assert any(",queue,sales,service_level,0.6" in line for line in lines)
    assert backwards.code == 2 and "must end after it starts" in backwards.err
    # a missing database is refused, never created (the read leaves nothing behind)
    assert stale.code == 2 and "no database at" in stale.err, stale.err
    assert "switchboard db upgrade" in stale.err and not (tmp_path / "empty.db").exists()
    for r in (csv_run, backwards, stale):
        assert "Traceback" not in r.err, r.err


def test_report_command_refuses_a_bad_date_before_touching_anything(capsys):
    args = Namespace(start="soon", end="2026-01-02", interval="1h")
    untouchable = object()  # the context: any use of it would raise
    assert _run(cmd_report(untouchable, args)) == 2
    assert "not a date" in capsys.readouterr().err


def _run(coroutine):
    """A coroutine that never waits: its result."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the command waited")


# ---------------------------------------------------------------------- a running server


def token(role: str, sub: str = "sup1") -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": role, "iat": now, "exp": now + 600,
                       "iss": "switchboard", "aud": "switchboard-console"}, SECRET,
                      algorithm="HS256")


def get(url: str, auth: str | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def server(day_db, day_dir):
    tmp_path = day_dir
    secret = Path(tmp_path / "jwt.secret")
    secret.write_text(SECRET)
    port = free_port()
    env = base_env(SWITCHBOARD_SERVER_HTTP_PORT=str(port),
                   SWITCHBOARD_CONSOLE_PORT=str(free_port()),
                   SWITCHBOARD_CONSOLE_JWT_SECRET_FILE=str(secret),
                   SWITCHBOARD_EMAIL_ENABLED="false")
    proc = subprocess.Popen([*switchboard_command(), "--database", day_db, "serve"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve exited with {proc.returncode}: {proc.stderr.read()}")
            try:
                code, _, body = get(base + "/healthz")
                if code == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("serve did not answer")
            time.sleep(0.1)  # polling a real server started in another process
        yield base, json.loads(body)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        assert "Traceback" not in err, err


REPORT = "/report?from=2026-01-01T08:00&to=2026-01-01T18:00"


def test_http_report_needs_a_supervisor_token(server):
    base, health = server
    assert health["status"] == "ok" and health["database"] == "ok"
    code, headers, body = get(base + REPORT)
    assert code == 401 and "Bearer" in headers.get("WWW-Authenticate", "")
    assert get(base + REPORT, "Bearer not-a-token")[0] == 401
    assert get(base + REPORT, f"Bearer {token('agent', 'ann')}")[0] == 403
    code, headers, body = get(base + REPORT + "&format=json",
                              f"Bearer {token('supervisor')}")
    assert code == 200, body
    assert headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert doc["period"]["queue"]["sales"]["service_level"] == pytest.approx(0.6)
    code, headers, body = get(base + REPORT + "&format=html&queue=sales",
                              f"Bearer {token('supervisor')}")
    assert code == 200 and body.count(b"<svg") == 5
    code, _, body = get(base + REPORT + "&format=pdf", f"Bearer {token('supervisor')}")
    assert code == 400 and b"format" in body
    code, _, body = get(base + REPORT + "&queue=nope", f"Bearer {token('supervisor')}")
    assert code == 400 and b"nope" in body


def test_metrics_scrape_a_running_app(server):
    base, _ = server
    code, headers, body = get(base + "/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in ("switchboard_queue_waiting", "switchboard_queue_longest_wait_seconds",
                 "switchboard_agents", "switchboard_offers", "switchboard_uptime_seconds",
                 "switchboard_event_loop_lag_seconds", "switchboard_db_commits"):
        assert name in families, name
    waiting = {(s.labels["queue"], s.labels["channel"]): s.value
               for s in families["switchboard_queue_waiting"].samples}
    assert waiting[("sales", "phone")] == 0
    assert families["switchboard_uptime_seconds"].samples[0].value > 0
    # Today's service level: the scripted day is in 2026, so today holds nothing yet.
    assert "switchboard_service_level_settled_today" in families
