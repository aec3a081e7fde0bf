"""`switchboard demo` as a user runs it: a working contact centre on SQLite that serves its pages
on the ports it is given, takes e-mails by SMTP at the addresses it prints and the contact form,
prints commands that run exactly as printed, and carries on after a stop and a restart on the
same folder (what robots held at the stop is finished, work flows again)."""

from __future__ import annotations

import json
import re
import shlex
import smtplib
import subprocess
import time
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import sqlalchemy as sa
from argon2 import PasswordHasher

from tests.dispatcher.runtime.running import base_env, free_port, run, switchboard_command

DURATION, RATE = 8, 120
# The play is seeded. Robot agents take 0.5-2.5 s to accept and 3-14 s to handle a task, so an
# 8 s run completes something only if its first customers are quick ones; seed 10 completes
# its first task at ~5.7 s and more by ~7 s, run after run, which leaves room for a slow machine.
SEED = 10
ROBOTS = {"alice", "bruno", "chloe", "dmitri", "emma", "farid"}
STATUS = re.compile(r"^\[demo\] (\d+) handled \| .+$", re.MULTILINE)
MAX_STATUS_CHARS = 120  # it was ~450 characters every 3 s
COMMAND = re.compile(r"^    (\S.* --database sqlite:///\S+ tasks list)$", re.MULTILINE)
SUBJECT = "Order 4711 never arrived"
FORM_SUBJECT = "Call me about my invoice"


def probe_health(port: int, proc: subprocess.Popen, within: float) -> dict | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                return json.loads(resp.read())
        except OSError:
            time.sleep(0.1)  # polling a real server in another process
    return None


class Demo:
    """One `switchboard demo` run on `folder`, on free ports."""

    def __init__(self, tmp_path: Path, folder: Path) -> None:
        self.http, self.smtp, self.ws = free_port(), free_port(), free_port()
        self.proc = subprocess.Popen(
            [*switchboard_command(), "demo", "--dir", str(folder), "--duration", str(DURATION),
             "--rate", str(RATE), "--seed", str(SEED), "--http-port", str(self.http),
             "--smtp-port", str(self.smtp), "--console-port", str(self.ws)],
            cwd=tmp_path, env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self) -> tuple[str, str]:
        try:
            out, err = self.proc.communicate(timeout=DURATION + 40)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
        assert self.proc.returncode == 0, err
        assert "Traceback" not in out + err, err
        return out, err


def send_mail(port: int) -> dict:
    msg = EmailMessage()
    msg["From"] = "Ada Tester <ada@example.org>"
    msg["To"] = "support@example.com"
    msg["Subject"] = SUBJECT
    msg.set_content("Hello,\n\nmy order 4711 never arrived. Can you check?\n\nAda")
    msg.add_attachment(b"%PDF-1.4\n%%EOF\n", maintype="application", subtype="pdf",
                       filename="receipt.pdf")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.send_message(msg)  # refused recipients; 250 means committed


def post_form(port: int) -> dict:
    body = json.dumps({"name": "Bea Form", "email": "bea@example.org", "subject": FORM_SUBJECT,
                       "message": "Please call me back about invoice 2026-118."}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/forms/contact", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def tasks_of(db: Path, cwd: Path) -> list[dict]:
    listed = run("--database", f"sqlite:///{db}", "tasks", "list", "--limit", "0", "--json",
                 cwd=cwd, env=base_env())
    assert listed.code == 0, listed.err
    return json.loads(listed.out)


def test_the_demo_takes_mail_and_forms_and_carries_on_after_a_restart(tmp_path):
    folder = tmp_path / "demo"
    db = folder / "demo.db"

    # --- first run: pages, SMTP at the printed address, the contact form
    first = Demo(tmp_path, folder)
    try:
        health = probe_health(first.http, first.proc, within=DURATION)
        refused = send_mail(first.smtp)
        form = post_form(first.http)
        pages = {}
        for page in ("wallboard", "help", "forms/contact"):
            with urllib.request.urlopen(f"http://127.0.0.1:{first.http}/{page}",
                                        timeout=5) as resp:
                pages[page] = resp.status
    finally:
        out, err = first.finish()

    assert health is not None and health["status"] == "ok", "no /healthz on the given port"
    assert health["queues"] == 3
    assert refused == {}
    assert form["status"] == "received" and form["request"].startswith("SB-")
    assert pages == {"wallboard": 200, "help": 200, "forms/contact": 200}
    for shown in (f"http://127.0.0.1:{first.http}/healthz",
                  f"http://127.0.0.1:{first.http}/wallboard",
                  f"http://127.0.0.1:{first.http}/forms/contact",
                  "support@example.com", f"127.0.0.1:{first.smtp}"):
        assert shown in out
    lines = [int(n) for n in STATUS.findall(out)]
    assert len(lines) >= 2, out  # every 3 s, and once more at the end
    assert lines == sorted(lines) and lines[-1] >= 1, out
    assert all(len(m.group(0)) <= MAX_STATUS_CHARS for m in STATUS.finditer(out)), out
    assert err.count("\n") <= 2, err  # a warning at most (no relay), not pages of logs

    # The printed command runs exactly as printed, from where the demo ran.
    [printed] = COMMAND.findall(out)
    shown = subprocess.run(shlex.split(printed), cwd=tmp_path, env=base_env(),
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr

    tasks = tasks_of(db, tmp_path)
    by_subject = {t["subject"]: t for t in tasks if t["subject"]}
    mail = by_subject[SUBJECT]
    assert (mail["channel"], mail["queue"], mail["request"][:3]) == ("email", "support", "SB-")
    assert by_subject[FORM_SUBJECT]["queue"] == "support"
    assert by_subject[FORM_SUBJECT]["request"] == form["request"]
    completed_before = {t["id"] for t in tasks if t["state"] == "completed"}
    assert completed_before, tasks
    held = {t["id"] for t in tasks if t["state"] == "assigned" and t["agent"] in ROBOTS}
    assert held, "the robots held nothing at the stop: the restart below proves little"
    # The robots answered e-mails through the reply path, some with a library answer (a reply
    # the quality sampling holds for review, at random, is `reply.held` instead of queued).
    trails = [json.loads(run("--database", f"sqlite:///{db}", "tasks", "show", t["id"],
                             "--json", cwd=tmp_path, env=base_env()).out)["trail"]
              for t in tasks if t["channel"] == "email" and t["state"] == "completed"]
    replies = [e for trail in trails for e in trail
               if (e["kind"] == "email.queued" and e["data"].get("kind") == "reply")
               or e["kind"] == "reply.held"]
    assert replies, " | ".join(" ".join(f"{e['kind']}:{e['actor']}:{e['data'].get('kind') or ''}"
                                        for e in t) for t in trails)
    assert {r["actor"].partition(":")[2] for r in replies} <= ROBOTS

    # Accounts: `you` and `boss` sign in with the passwords printed once; hashes only kept.
    printed_passwords = dict(re.findall(r"sign in as `(\w+)` with the password (\S+)", out))
    assert set(printed_passwords) == {"you", "boss"}, out
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            hashes = dict(conn.execute(sa.text("select id, password_hash from accounts")).all())
            answers = conn.execute(sa.text("select count(*) from answers")).scalar()
            articles = conn.execute(sa.text("select count(*) from kb_articles")).scalar()
    finally:
        engine.dispose()
    for who, password in printed_passwords.items():
        assert PasswordHasher().verify(hashes[who], password)
        assert password not in err
    assert answers >= 10 and articles >= 5

    # --- second run on the same folder: what the robots held is finished, work flows again
    second = Demo(tmp_path, folder)
    out2, err2 = second.finish()

    assert "picked up" in out2, out2
    after = {t["id"]: t for t in tasks_of(db, tmp_path)}
    assert {after[i]["state"] for i in held} <= {"completed", "wrap_up"}, [after[i] for i in held]
    # Work that waited at the stop or arrived since was taken by the robots (and, for the
    # quick ones, finished) within the few seconds of the second run.
    taken = {i for i, t in after.items() if t["state"] in ("assigned", "wrap_up", "completed")}
    assert taken - completed_before - held, "no new work was taken after the restart"
    assert [int(n) for n in STATUS.findall(out2)][-1] >= len(held), out2
    last = [m.group(0) for m in STATUS.finditer(out2)][-1]
    assert "not_responding" not in last, out2
