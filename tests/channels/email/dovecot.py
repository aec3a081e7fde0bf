"""A real IMAP server for the tests: Debian's dovecot-imapd (package `dovecot-imapd`) on a free
loopback port with its own config and a temporary Maildir, started in the foreground as a child
of the test (the config below is all it reads: no SSL, users from a passwd-file). Root: the mail
processes run as uid `mail`; otherwise everything runs as the current user without chroot."""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import missing

USER = "alice"
PASSWORD = "secret"
READY_TIMEOUT = 10.0

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
{identity}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {tmp}/users
}}
userdb {{
  driver = static
  args = home={tmp}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  {chroot}
}}
{anvil}
"""

AS_ROOT = """\
mail_uid = mail
mail_gid = mail
first_valid_uid = 8
first_valid_gid = 8
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Dovecot:
    proc: subprocess.Popen
    port: int
    tmp: Path

    def append(self, raw: bytes, mailbox: str = "INBOX") -> None:
        self.run(("append", mailbox, None, None, raw))

    def run(self, *commands: tuple[str, ...]) -> list[list[bytes]]:
        """Run imaplib calls as (method, *args) in one session, returning each reply's data."""
        out = []
        m = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        try:
            m.login(USER, PASSWORD)
            for name, *args in commands:
                typ, data = getattr(m, name)(*args)
                assert typ == "OK", (name, args, data)
                out.append(data)
            m.logout()
        finally:
            with contextlib.suppress(OSError):
                m.shutdown()
        return out

    def kick(self) -> None:
        """Disconnect every IMAP session of the user, as a server restart would."""
        subprocess.run([shutil.which("doveadm") or "/usr/bin/doveadm", "-c",
                        str(self.tmp / "dovecot.conf"), "kick", USER],
                       check=True, capture_output=True, timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _identity_settings(tmp: Path) -> tuple[str, str, str]:
    if os.geteuid() == 0:
        return AS_ROOT, "", ""
    me = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    identity = (f"default_internal_user = {me}\ndefault_internal_group = {group}\n"
                f"default_login_user = {me}\n")
    return identity, "chroot =", "service anvil {\n  chroot =\n}"


@contextlib.contextmanager
def running() -> Iterator[Dovecot]:
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot"
                                         if os.path.exists("/usr/sbin/dovecot") else None)
    if binary is None:
        missing("dovecot is not installed (Debian package dovecot-imapd)")
    tmp = Path(tempfile.mkdtemp(prefix="sb-dovecot-"))
    proc = None
    try:
        tmp.chmod(0o755)  # mkdtemp makes 0700: uid mail could not enter
        home = tmp / "home" / USER
        home.mkdir(parents=True)
        if os.geteuid() == 0:
            for d in (tmp / "home", home):
                shutil.chown(d, "mail", "mail")
        (tmp / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        port = free_port()
        identity, chroot, anvil = _identity_settings(tmp)
        conf = tmp / "dovecot.conf"
        conf.write_text(CONFIG.format(tmp=tmp, port=port, identity=identity, chroot=chroot,
                                      anvil=anvil))
        proc = subprocess.Popen([binary, "-F", "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                missing(f"dovecot did not start (rc {proc.returncode}): {err[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    missing("dovecot did not open its port")
                time.sleep(0.02)
        server = Dovecot(proc, port, tmp)
        yield server
    finally:
        if proc is not None:
            Dovecot(proc, 0, tmp).stop()
        shutil.rmtree(tmp, ignore_errors=True)
