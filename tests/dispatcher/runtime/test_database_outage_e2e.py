"""Several nodes through a PostgreSQL restart and outage, end to end: a private PostgreSQL server
the test starts on its own port (initdb in a temporary folder) so that it can stop it, and
real `switchboard serve` processes on it, sent mail over SMTP.

- Restarts shorter than a renewal keep the leader (its advisory-lock connection dropped with
  the restart, but it takes its lock back at its next renewal: storage/lease.py `grace`), and
  the standby stays a standby.
- An outage longer than the lease: the leader stops routing at 90 % of it, waits for its
  database, starts again and leads again; no message was answered 250 without being stored.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import smtplib
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.dispatcher.runtime.running import base_env, free_port, run, serving
from tests.support import missing

LEASE = "2"  # seconds
SETTLE_SECONDS = 20.0


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of the test's own (trust auth, no fsync): start, stop, restart."""

    bin: Path
    data: Path
    port: int
    owner: str | None  # run the server as this user (PostgreSQL refuses root)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 -c fsync=off"
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                   str(self.data.parent / "server.log"), *args, "-o", options]
        self._as_owner(command)

    def _as_owner(self, command: list[str]) -> None:
        if self.owner is not None:
            command = ["su", self.owner, "-c", " ".join(f"'{c}'" for c in command)]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[PrivatePostgres]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or (
        [shutil.which("initdb")] if shutil.which("initdb") else [])
    if not found:
        missing("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    bin_dir = Path(found[-1]).parent
    owner = None
    # Its own folder under /tmp: pytest's are private to the user running the tests.
    folder = Path(tempfile.mkdtemp(prefix="switchboard-pg-"))
    if os.geteuid() == 0:
        owner = "postgres"
        if subprocess.run(["id", owner], capture_output=True).returncode != 0:
            missing("running as root and there is no 'postgres' user to run a server as")
        shutil.chown(folder, owner)
    pg = PrivatePostgres(bin_dir, folder / "data", free_port(), owner)
    try:
        pg._as_owner([str(bin_dir / "initdb"), "-D", str(pg.data), "-A", "trust", "-U",
                      "postgres"])
        pg.start()
        yield pg
    finally:
        with suppress(subprocess.CalledProcessError):
            pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Node:
    name: str
    http: int
    smtp: int

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=2) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())
        except OSError:
            return None

    def role(self) -> tuple[str | None, int | None]:
        h = self.health()
        if h is None:
            return None, None
        cluster = h.get("cluster", h)
        return cluster.get("role"), cluster.get("epoch")


def node_env(tmp: Path, url: str, node: Node) -> dict[str, str]:
    secret = tmp / "jwt.secret"
    if not secret.exists():
        secret.write_text("ab" * 32)
    return base_env(
        SWITCHBOARD_DATABASE_URL=url, SWITCHBOARD_CLUSTER_NODE=node.name,
        SWITCHBOARD_CLUSTER_LEASE_SECONDS=LEASE, SWITCHBOARD_SERVER_HTTP_PORT=str(node.http),
        SWITCHBOARD_EMAIL_SMTP_PORT=str(node.smtp), SWITCHBOARD_EMAIL_DEFAULT_QUEUE="support",
        SWITCHBOARD_EMAIL_DOMAINS="example.com", SWITCHBOARD_CONSOLE_PORT=str(free_port()),
        SWITCHBOARD_CONSOLE_JWT_SECRET_FILE=str(secret), SWITCHBOARD_PHONE_ENABLED="false",
        SWITCHBOARD_WEBHOOKS_ENABLED="false")


def wait_for(what: str, check, seconds: float = SETTLE_SECONDS):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


def send(port: int, tag: str) -> bool:
    """One message; True when it was answered 250."""
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "c@cust.test", "help@example.com", tag
    m["Message-ID"] = f"<{tag}@cust.test>"
    m.set_content("hello")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.send_message(m)
        return True
    except (smtplib.SMTPException, OSError):
        return False


def stored(url: str, tags: list[str]) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT message_id FROM email_messages WHERE "
                                        "direction = 'in'")).scalars()
            have = {r.strip("<>").split("@")[0] for r in rows if r}
    finally:
        engine.dispose()
    return {t for t in tags if t in have}


def prepare(tmp: Path, url: str) -> None:
    env = base_env()
    for args in (("--database", url, "db", "upgrade"),
                 ("--database", url, "queues", "add", "support")):
        done = run(*args, cwd=tmp, env=env)
        assert done.code == 0, done.err


@pytest.mark.postgres
def test_database_restarts_keep_the_leader_and_the_standby(private_pg: PrivatePostgres,
                                                            tmp_path: Path) -> None:
    url = private_pg.url
    prepare(tmp_path, url)
    a, b = Node("a", free_port(), free_port()), Node("b", free_port(), free_port())
    with ExitStack() as nodes:
        for node in (a, b):
            folder = tmp_path / node.name
            folder.mkdir()
            nodes.enter_context(serving(folder, node_env(tmp_path, url, node), [node.http]))
            if node is a:
                wait_for("a leads", lambda: a.role()[0] == "leader")
        wait_for("b stands by", lambda: b.role()[0] == "standby")
        epoch = a.role()[1]
        sent: list[str] = []
        for i in range(3):
            private_pg.restart()
            tag = f"after-restart-{i}"
            assert wait_for(f"mail accepted after restart {i}", lambda t=tag: send(a.smtp, t))
            sent.append(tag)
            time.sleep(1.0)  # a renewal or two
        assert a.role() == ("leader", epoch), (a.health(), (tmp_path / "a" / "serve.log")
                                                .read_text(errors="replace")[-2000:])
        assert b.role()[0] == "standby"
        assert wait_for("every accepted message stored", lambda: stored(url, sent) == set(sent))


@pytest.mark.postgres
def test_an_outage_longer_than_the_lease_deposes_the_leader_which_comes_back(
        private_pg: PrivatePostgres, tmp_path: Path) -> None:
    url = private_pg.url
    prepare(tmp_path, url)
    a = Node("a", free_port(), free_port())
    folder = tmp_path / "a"
    folder.mkdir()
    with serving(folder, node_env(tmp_path, url, a), [a.http]) as log:
        wait_for("a leads", lambda: a.role()[0] == "leader")
        epoch = a.role()[1]
        assert send(a.smtp, "before")
        private_pg.stop()
        accepted = ["before"]
        down_until = time.monotonic() + 2 * float(LEASE) + 1
        i = 0
        while time.monotonic() < down_until:  # nothing may be answered 250 without a database
            tag = f"during-{i}"
            if send(a.smtp, tag):
                accepted.append(tag)
            i += 1
            time.sleep(0.2)
        private_pg.start()
        wait_for("a leads again", lambda: a.role()[0] == "leader" and a.role()[1] > epoch, 30)
        assert send(a.smtp, "after")
        accepted.append("after")
        text = log.read_text(errors="replace")
        assert "stopped routing" in text and "waiting for the database" in text, text[-2000:]
        assert wait_for("every accepted message stored",
                        lambda: stored(url, accepted) == set(accepted))
