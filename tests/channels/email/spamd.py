"""SpamAssassin's spamd on a free loopback port for the spam tests (Debian `spamd`): offline
rules (`--local`), no user configuration, foreground; ready when PING answers PONG. Missing
binary: skip (fail under SWITCHBOARD_STRICT=1)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support import missing, need_binary, stop_process

READY_TIMEOUT = 30.0
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@dataclass
class Spamd:
    port: int
    proc: subprocess.Popen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exchange(port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send a raw request, half-close, read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _ready(port: int) -> bool:
    try:
        return b"PONG" in exchange(port, b"PING SPAMC/1.5\r\n\r\n", timeout=2.0)
    except OSError:
        return False


@contextlib.contextmanager
def running() -> Iterator[Spamd]:
    binary = need_binary("spamd")
    home = tempfile.mkdtemp(prefix="sb-spamd-")
    port = free_port()
    args = [binary, f"--listen=127.0.0.1:{port}", "--allowed-ips=127.0.0.1", "--nouser-config",
            f"--helper-home-dir={home}", "--local", "--max-children=2", "--min-children=1",
            "--syslog=stderr", f"--pidfile={home}/spamd.pid"]
    if os.geteuid() == 0:
        shutil.chown(home, "nobody", "nogroup")
        args += ["--username=nobody", "--groupname=nogroup"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _ready(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                missing(f"spamd did not start (rc {proc.poll()})")
            time.sleep(0.2)
        yield Spamd(port, proc)
    finally:
        stop_process(proc)
        shutil.rmtree(home, ignore_errors=True)
