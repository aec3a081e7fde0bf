"""`switchboard demo`: a working contact centre on SQLite in one command; it serves /healthz on
the configured port while it runs, and what it handled is in its database afterwards, readable
with the other commands."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request

import sqlalchemy as sa
from argon2 import PasswordHasher

from tests.dispatcher.runtime.running import base_env, free_port, run, switchboard_command

DURATION, RATE = 8, 120
# The play is seeded. Robot agents take 0.5-2.5 s to accept and 3-14 s to handle a task, so an
# 8 s run completes something only if its first customers are quick ones: with the default seed
# (7) the first completion lands at ~7.8 s, a hair before the end; about half of all seeds
# complete nothing in 8 s. Seed 10 completes its first task at ~5.7 s and two more by ~7 s,
# run after run, which leaves room for a slow machine.
SEED = 10
FIGURES = re.compile(r"^\[demo\] (\d+) handled \| agents: .+ \| .+$", re.MULTILINE)


def probe_health(port: int, proc: subprocess.Popen, within: float) -> dict | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                return json.loads(resp.read())
        except OSError:
            time.sleep(0.1)  # polling a real server in another process
    return None


def test_demo_runs_handles_tasks_and_leaves_them_in_its_database(tmp_path):
    port = free_port()
    folder = tmp_path / "demo"
    proc = subprocess.Popen(
        [*switchboard_command(), "demo", "--dir", str(folder), "--duration", str(DURATION),
         "--rate", str(RATE), "--seed", str(SEED)],
        cwd=tmp_path, env=base_env(SWITCHBOARD_SERVER_HTTP_PORT=str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        health = probe_health(port, proc, within=DURATION)
        pages = {}
        for page in ("wallboard", "help"):  # the pages the demo's banner points to
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{page}", timeout=5) as resp:
                pages[page] = resp.status
        out, err = proc.communicate(timeout=DURATION + 40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 0, err
    assert "Traceback" not in out + err, err
    assert health is not None and health["status"] == "ok", "no /healthz on the configured port"
    assert health["queues"] == 3
    assert f"http://127.0.0.1:{port}/healthz" in out
    assert pages == {"wallboard": 200, "help": 200}
    assert f"http://127.0.0.1:{port}/wallboard" in out and f"http://127.0.0.1:{port}/help" in out
    handled = [int(n) for n in FIGURES.findall(out)]
    assert len(handled) >= 2, out  # every 3 s, and once more at the end
    assert handled == sorted(handled)
    assert handled[-1] >= 1, out
    db = folder / "demo.db"
    assert db.exists()

    listed = run("--database", f"sqlite:///{db}", "tasks", "list", "--json", cwd=tmp_path,
                 env=base_env())

    assert listed.code == 0, listed.err
    tasks = json.loads(listed.out)
    states = [t["state"] for t in tasks]
    assert states.count("completed") >= 1, states
    assert {t["channel"] for t in tasks} <= {"email", "phone"}
    assert {t["queue"] for t in tasks} <= {"support", "sales", "billing"}

    # The desk of `you` and the supervisor `boss` sign in with the passwords printed once at
    # start; the database keeps their argon2 hashes only.
    printed = dict(re.findall(r"sign in as `(\w+)` with the password (\S+)", out))
    assert set(printed) == {"you", "boss"}, out
    accounts = run("--database", f"sqlite:///{db}", "accounts", "list", "--json", cwd=tmp_path,
                   env=base_env())
    assert accounts.code == 0, accounts.err
    roles = {a["id"]: (a["role"], a["password"]) for a in json.loads(accounts.out)}
    assert roles == {"you": ("agent", True), "boss": ("supervisor", True)}
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            hashes = dict(conn.execute(sa.text("select id, password_hash from accounts")).all())
    finally:
        engine.dispose()
    for who, password in printed.items():
        assert PasswordHasher().verify(hashes[who], password)
        assert password not in err
