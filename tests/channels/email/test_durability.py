"""Durability: SIGKILL the dispatcher at a random point while clients send; after a restart,
every message that got its 250 is a stored task (250 is sent only after the commit).

Runs the composition of tests/channels/email/server.py (what `switchboard serve` builds once it
loads edges) as a subprocess on a SQLite file."""

from __future__ import annotations

import random
import smtplib
import threading
import time

import pytest

from tests.channels.email import running

SENDERS = 4


@pytest.mark.slow
def test_every_250_survives_a_sigkill(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    server = running.start(url)
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as c:
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
    time.sleep(random.uniform(0.8, 2.0))
    server.kill()
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acknowledged) > 10
    again = running.start(url)  # restarts on the same database, rebuilds the router
    try:
        stored = {s for (s,) in running.rows(url, "select subject from email_messages "
                                                  "where direction = 'in'")}
        tasks = running.rows(url, "select count(*) from tasks t join email_messages m on "
                                  "m.task_id = t.id where m.subject like 'durable-%'")[0][0]
    finally:
        again.stop()
    lost = [s for s in acknowledged if s not in stored]
    assert lost == []
    assert tasks >= len(acknowledged)
