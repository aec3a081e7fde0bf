"""Durability: SIGKILL `switchboard serve` at a random point while clients send; after a restart,
every message that got its 250 is a stored task (250 is sent only after the commit).

Runs the real command, as an operator would: `switchboard db upgrade`, `queues add`, then
`serve` with the e-mail edge configured by SWITCHBOARD_EMAIL_* variables, on a SQLite file."""

from __future__ import annotations

import random
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from tests.channels.email import running
from tests.dispatcher.runtime.running import base_env, free_port, switchboard_command

SENDERS = 4
READY_TIMEOUT = 30.0


def start_serve(url: str, smtp_port: int, cwd) -> subprocess.Popen:
    env = base_env(
        SWITCHBOARD_DATABASE_URL=url,
        SWITCHBOARD_SERVER_HTTP_PORT=str(free_port()),
        SWITCHBOARD_EMAIL_SMTP_PORT=str(smtp_port),
        SWITCHBOARD_EMAIL_RECIPIENTS="support@example.com=support",
        SWITCHBOARD_CONSOLE_ENABLED="false",
    )
    proc = subprocess.Popen([*switchboard_command(), "serve"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", smtp_port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not open its SMTP port")


@pytest.mark.slow
def test_every_250_survives_a_sigkill_of_switchboard_serve(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    for args in (["db", "upgrade"], ["queues", "add", "support"]):
        subprocess.run([*switchboard_command(), "--database", url, *args], cwd=tmp_path,
                       env=base_env(), check=True, capture_output=True, timeout=60)
    port = free_port()
    server = start_serve(url, port, tmp_path)
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                    while not stop.is_set():
                        subject = f"durable-{n}-{i}"
                        i += 1
                        c.sendmail(f"c{n}@customer.org", ["support@example.com"],
                                   f"Subject: {subject}\r\n\r\nbody\r\n".encode())
                        with lock:
                            acknowledged.append(subject)
            except (OSError, smtplib.SMTPException):
                return  # the server died under us: what was not acknowledged may be lost

    threads = [threading.Thread(target=client, args=(n,)) for n in range(SENDERS)]
    for t in threads:
        t.start()
    # The kill comes at a random point once mail flows: the first 250 may wait for a parse
    # worker to start (seconds, on a loaded machine).
    deadline = time.monotonic() + READY_TIMEOUT
    while not acknowledged and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.8, 2.0))
    server.kill()
    server.wait(10)
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acknowledged) > 10
    again = start_serve(url, port, tmp_path)  # same database: the router is rebuilt
    try:
        stored = {s for (s,) in running.rows(url, "select subject from email_messages "
                                                  "where direction = 'in'")}
        tasks = running.rows(url, "select count(*) from tasks t join email_messages m on "
                                  "m.task_id = t.id where m.subject like 'durable-%'")[0][0]
    finally:
        again.terminate()
        assert again.wait(20) == 0  # SIGTERM: a clean stop
    lost = [s for s in acknowledged if s not in stored]
    assert lost == []
    assert tasks >= len(acknowledged)
