"""A private Postfix instance for bench/smtp.py: the peer that, like Switchboard, stores a message
durably before it answers 250 (smtpd -> cleanup -> a queue file written and fsync'ed, Postfix's
default), then delivers it to the `discard` transport.

Sits in bench/, next to its only user. `private_postfix()` builds the instance in a temporary
directory of its own (its config_directory with main.cf and master.cf, its queue_directory and
data_directory; the system's /etc/postfix is only read for the daemons' meta files), listens on
127.0.0.1 at a free port, starts it with `postfix -c DIR start` and stops it with `postfix -c DIR
stop` afterwards. Nothing is relayed: every recipient of 127.0.0.0/8 clients goes to `discard:`.
Postfix logs each message, as it does in production, to a file in that directory (postlogd).
Starting a Postfix master needs root; when Postfix is not installed, we are not root or it does
not start, `Missing` says why and the benchmark reports the peer as missing.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# The services the master runs: smtpd on our port, and what a queued message needs up to its
# discard delivery (no chroot: the queue directory is not prepared for one).
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
command_directory = {command_dir}
daemon_directory = {daemon_dir}
meta_directory = {meta_dir}
shlib_directory = {shlib_dir}
mail_owner = {owner}
setgid_group = {group}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench.invalid
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
default_transport = discard
relay_transport = discard
local_transport = discard
alias_maps =
alias_database =
smtpd_peername_lookup = no
biff = no
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
"""

QUEUES = ("incoming", "active", "deferred", "maildrop", "hold")
START_TIMEOUT = 20.0


class Missing(Exception):
    """Postfix cannot run here; the text says why."""


@dataclass
class Postfix:
    directory: Path
    port: int

    def queued(self) -> int:
        """Queue files not yet delivered (all of them go to discard:)."""
        queue = self.directory / "queue"
        return sum(len(os.listdir(queue / name)) for name in QUEUES if (queue / name).is_dir())

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until every accepted message is delivered, so the next run starts on an idle
        queue manager."""
        deadline = time.monotonic() + timeout
        while self.queued() and time.monotonic() < deadline:
            time.sleep(0.05)

    def delivered(self) -> int:
        log = self.directory / "maillog"
        if not log.exists():
            return 0
        with log.open("rb") as f:
            return sum(1 for line in f if b"postfix/discard" in line and b"status=sent" in line)

    def log_tail(self, lines: int = 5) -> str:
        log = self.directory / "maillog"
        text = log.read_text(errors="replace").splitlines() if log.exists() else []
        return " | ".join(text[-lines:])


def _postfix(directory: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["postfix", "-c", str(directory / "conf"), *command],
                          capture_output=True, text=True, timeout=60)


def _paths() -> dict[str, str]:
    found = {}
    for name in ("command_directory", "daemon_directory", "meta_directory", "shlib_directory"):
        # the compiled-in defaults: `postconf -d` needs no main.cf
        done = subprocess.run(["postconf", "-d", "-h", name], capture_output=True, text=True,
                              timeout=30)
        if done.returncode != 0 or not done.stdout.strip():
            raise Missing(f"postconf -d {name} failed: {done.stderr.strip()[:200]}")
        found[name] = done.stdout.strip()
    return found


@contextmanager
def private_postfix(port: int, owner: str = "postfix", group: str = "postdrop"
                    ) -> Iterator[Postfix]:
    """A running private Postfix on 127.0.0.1:`port`, stopped and removed on exit."""
    if shutil.which("postfix") is None or shutil.which("postconf") is None:
        raise Missing("Postfix is not installed (apt-get install postfix, 'No configuration')")
    if os.getuid() != 0:
        raise Missing("a Postfix master needs root to start")
    try:
        pwd.getpwnam(owner)
        grp.getgrnam(group)
    except KeyError as exc:
        raise Missing(f"no {exc} user or group for mail_owner/setgid_group") from None
    paths = _paths()
    directory = Path(tempfile.mkdtemp(prefix="sb-bench-postfix-"))
    directory.chmod(0o755)  # the daemons run as mail_owner and must reach the queue
    try:
        for name in ("conf", "queue", "data"):
            (directory / name).mkdir()
        shutil.chown(directory / "data", user=owner)
        (directory / "conf" / "main.cf").write_text(MAIN_CF.format(
            dir=directory, owner=owner, group=group, command_dir=paths["command_directory"],
            daemon_dir=paths["daemon_directory"], meta_dir=paths["meta_directory"],
            shlib_dir=paths["shlib_directory"]))
        (directory / "conf" / "master.cf").write_text(MASTER_CF.format(port=port))
        peer = Postfix(directory, port)
        started = _postfix(directory, "start")
        if started.returncode != 0:
            raise Missing(f"postfix start failed (rc {started.returncode}): "
                          f"{(started.stderr.strip() or peer.log_tail())[:400]}")
        try:
            _wait_listening(port, peer)
            yield peer
        finally:
            _postfix(directory, "stop")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _wait_listening(port: int, peer: Postfix) -> None:
    import socket

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise Missing(f"postfix did not listen on {port}: {peer.log_tail()[:400]}")
