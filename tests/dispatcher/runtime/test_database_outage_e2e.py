"""Several nodes through a PostgreSQL restart and outage, end to end: a private PostgreSQL server
the test starts on its own port (initdb in a temporary folder) so that it can stop it, and
real `switchboard serve` processes on it (tests/dispatcher/runtime/cluster.py's nodes), sent
mail over SMTP; through each PostgreSQL driver (psycopg2, the default, and psycopg 3).

- Restarts shorter than a renewal keep the leader (its advisory-lock connection dropped with
  the restart, but it takes its lock back at its next renewal: storage/lease.py `grace`), and
  the standby stays a standby.
- An outage longer than the lease: the leader stops routing at 90 % of it, waits for its
  database, starts again and leads again; no message was answered 250 without being stored.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dispatcher.runtime.cluster import accepted, end_all, make_node, prepare, stored, until
from tests.dispatcher.runtime.running import free_port
from tests.dispatcher.storage.wiring import need_psycopg
from tests.support import missing

LEASE = 2.0  # seconds
# Restarts: a lease long enough that the leader's deadline (90 % of it) outlasts a restart on a
# loaded machine: what is tested is that the standby does not take the lease meanwhile.
RESTART_LEASE = 6.0
SETTLE_SECONDS = 20.0
NO_WEBHOOKS = {"SWITCHBOARD_WEBHOOKS_ENABLED": "false"}


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of the test's own (trust auth, no fsync): start, stop, restart."""

    bin: Path
    data: Path
    port: int
    owner: str | None  # run the server as this user (PostgreSQL refuses root)
    driver: str = "psycopg2"  # the one the nodes reach it through

    @property
    def url(self) -> str:
        return f"postgresql+{self.driver}://postgres@127.0.0.1:{self.port}/postgres"

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


@pytest.fixture(params=["psycopg2", "psycopg"])
def private_pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrivatePostgres]:
    """A private server, reached through each driver Switchboard supports (psycopg 3 too)."""
    if request.param == "psycopg":
        need_psycopg()
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
    pg = PrivatePostgres(bin_dir, folder / "data", free_port(), owner, request.param)
    try:
        pg._as_owner([str(bin_dir / "initdb"), "-D", str(pg.data), "-A", "trust", "-U",
                      "postgres"])
        pg.start()
        yield pg
    finally:
        with suppress(subprocess.CalledProcessError):
            pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.postgres
def test_database_restarts_keep_the_leader_and_the_standby(private_pg: PrivatePostgres,
                                                            tmp_path: Path) -> None:
    url = private_pg.url
    prepare(tmp_path, url)
    a, b = (make_node(tmp_path, url, name, RESTART_LEASE, **NO_WEBHOOKS) for name in ("a", "b"))
    try:
        a.start().until_up(lambda: a.health().role == "leader", "a leads", SETTLE_SECONDS)
        b.start().until_up(lambda: b.health().role == "standby", "b stands by", SETTLE_SECONDS)
        epoch = a.health().epoch
        sent: list[str] = []
        for i in range(3):
            private_pg.restart()
            tag = f"after-restart-{i}"
            assert until(lambda t=tag: accepted(a.ports.smtp, t, 10),
                         f"mail accepted after restart {i}", SETTLE_SECONDS, step=0.1)
            sent.append(tag)
            time.sleep(1.0)  # a renewal or two
        on_a = a.health()
        assert (on_a.role, on_a.epoch) == ("leader", epoch), (on_a.body, a.log(2000))
        assert b.health().role == "standby"
        assert until(lambda: stored(url, sent) == set(sent), "every accepted message stored",
                     SETTLE_SECONDS, step=0.1)
    finally:
        codes = end_all([b, a])
    assert codes == {"a": 0, "b": 0}, (codes, a.log(), b.log())


@pytest.mark.postgres
def test_an_outage_longer_than_the_lease_deposes_the_leader_which_comes_back(
        private_pg: PrivatePostgres, tmp_path: Path) -> None:
    url = private_pg.url
    prepare(tmp_path, url)
    a = make_node(tmp_path, url, "a", LEASE, **NO_WEBHOOKS)
    try:
        a.start().until_up(lambda: a.health().role == "leader", "a leads", SETTLE_SECONDS)
        epoch = a.health().epoch
        assert accepted(a.ports.smtp, "before", 10)
        private_pg.stop()
        sent = ["before"]
        # Long enough that the deposed leader, stopping slowly on a loaded machine, still finds
        # the database away when it starts waiting for it (its log then says so).
        down_until = time.monotonic() + 4 * LEASE + 1
        i = 0
        while time.monotonic() < down_until:  # nothing may be answered 250 without a database
            tag = f"during-{i}"
            if accepted(a.ports.smtp, tag, 10):
                sent.append(tag)
            i += 1
            time.sleep(0.2)
        private_pg.start()
        until(lambda: (lambda h: h.role == "leader" and h.epoch > epoch)(a.health()),
              "a leads again", 30, step=0.1)
        assert accepted(a.ports.smtp, "after", 10)
        sent.append("after")
        text = a.log(tail=None)
        assert "stopped routing" in text and "waiting for the database" in text, text[-2000:]
        assert until(lambda: stored(url, sent) == set(sent), "every accepted message stored",
                     SETTLE_SECONDS, step=0.1)
    finally:
        codes = end_all([a])
    assert codes == {"a": 0}, (codes, a.log())
