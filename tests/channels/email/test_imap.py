"""IMAP polling against a real server: Debian's dovecot-imapd (tests/channels/email/dovecot.py)
on a free port with a temporary Maildir; the dispatcher with the e-mail edge runs as a
subprocess (running.py / server.py) on a SQLite file, polling one folder per test.

Checked: appended messages become tasks with their exact bytes; they are marked \\Seen only
after the commit (a message that cannot be stored stays unseen); a lost mark (the state after a
crash between commit and STORE) is redone without a second task, both by a running poller and
after a restart; a SIGKILL in the middle of a batch loses and duplicates nothing; a new
UIDVALIDITY gives new source keys; a malformed message is stored flagged; `imap_move_to`."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from channels.email.config import EmailSettings, check_imap
from channels.email.parse import parse
from dispatcher.domain.errors import InvalidValue
from tests.channels.email import dovecot, running

WAIT = 15.0


@pytest.fixture(scope="module")
def imap() -> Iterator[dovecot.Dovecot]:
    with dovecot.running() as server:
        yield server


def message(subject: str, body: str = "Hello", sender: str = "c@customer.org") -> bytes:
    return (f"From: Customer <{sender}>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@customer.org>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            f"\r\n{body}\r\n").encode()


def start(imap: dovecot.Dovecot, url: str, folder: str, **settings: Any) -> running.Server:
    settings = {"imap_host": "127.0.0.1", "imap_port": imap.port, "imap_user": dovecot.USER,
                "imap_password": dovecot.PASSWORD, "imap_mailbox": folder,
                "imap_queue": "support", "imap_interval": 0.3, "ack_queues": "", **settings}
    return running.start(url, **settings)


def stored(url: str, folder: str) -> list[Any]:
    return running.rows(url, "select source, subject, raw, malformed, task_id from email_messages"
                             " where direction = 'in' and source like :p order by source",
                        p=f"imap:%/{folder}/%")


def wait_stored(url: str, folder: str, count: int) -> list[Any]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        rows = stored(url, folder)
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"{len(stored(url, folder))} of {count} messages stored in {WAIT} s")


def search(imap: dovecot.Dovecot, folder: str, criterion: str) -> list[int]:
    data = imap.run(("select", folder), ("uid", "SEARCH", criterion))[1]
    return [int(u) for u in data[0].split()]


def wait_unseen(imap: dovecot.Dovecot, folder: str, count: int) -> None:
    deadline = time.monotonic() + WAIT
    while len(search(imap, folder, "UNSEEN")) != count:
        assert time.monotonic() < deadline, search(imap, folder, "UNSEEN")
        time.sleep(0.05)


def uidvalidity(imap: dovecot.Dovecot, folder: str) -> int:
    data = imap.run(("status", folder, "(UIDVALIDITY)"))[0]
    return int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))


def create(imap: dovecot.Dovecot, folder: str, *messages: bytes) -> None:
    imap.run(("create", folder))
    for raw in messages:
        imap.append(raw, folder)


def tasks(url: str, folder: str) -> int:
    return running.rows(url, "select count(distinct task_id) from email_messages where "
                             "source like :p", p=f"imap:%/{folder}/%")[0][0]


def test_messages_become_tasks_and_are_seen_after_the_commit(imap, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    first = message("first", "Grüße, ça va? 8-bit body")
    create(imap, "T1", first, message("second"))
    # IDLE on, and an interval long enough that only a new-message notice can wake the poller
    server = start(imap, url, "T1", imap_interval=60.0)
    try:
        rows = wait_stored(url, "T1", 2)
        wait_unseen(imap, "T1", 0)
        validity = uidvalidity(imap, "T1")
        assert [r.source for r in rows] == [f"imap:alice@127.0.0.1/T1/{validity}/{u}"
                                            for u in (1, 2)]
        assert rows[0].raw.replace(b"\r\n", b"\n") == first.replace(b"\r\n", b"\n")
        assert [r.subject for r in rows] == ["first", "second"]
        assert tasks(url, "T1") == 2
        imap.append(message("third"), "T1")  # arrives during IDLE
        assert len(wait_stored(url, "T1", 3)) == 3
        wait_unseen(imap, "T1", 0)
    finally:
        assert server.stop() == 0
    assert len(stored(url, "T1")) == 3 and tasks(url, "T1") == 3


def test_mail_arriving_while_the_poller_works_is_not_left_waiting(imap, tmp_path) -> None:
    """IDLE on and a long interval: a message that arrives between the poller's SEARCH and its
    next IDLE is announced with another reply, not by the IDLE; it must not wait 60 s."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create(imap, "T8", message("seed"))
    server = start(imap, url, "T8", imap_interval=60.0)
    try:
        wait_stored(url, "T8", 1)
        for i in range(15):
            imap.append(message(f"stream {i:02d}"), "T8")
            time.sleep(0.02)
        assert len(wait_stored(url, "T8", 16)) == 16
        wait_unseen(imap, "T8", 0)
    finally:
        assert server.stop() == 0


def test_a_message_that_cannot_be_stored_stays_unseen(imap, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create(imap, "T2", message("not yet"))
    server = start(imap, url, "T2", imap_queue="no-such-queue", imap_idle=False)
    try:
        time.sleep(1.0)  # several polls, each failing to store
        assert stored(url, "T2") == []
        assert search(imap, "T2", "UNSEEN") == [1]
    finally:
        assert server.stop() == 0
    server = start(imap, url, "T2")
    try:
        assert len(wait_stored(url, "T2", 1)) == 1
        wait_unseen(imap, "T2", 0)
    finally:
        assert server.stop() == 0


def test_a_lost_mark_is_redone_without_a_second_task(imap, tmp_path) -> None:
    """Committed but not marked (a crash or a dropped connection between commit and STORE):
    simulated by clearing \\Seen behind the poller's back, while it runs (found by the next
    search, at the end of an IDLE) and while it is stopped (found after the restart)."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create(imap, "T3", message("one"), message("two"))
    server = start(imap, url, "T3", imap_interval=0.3)
    try:
        wait_stored(url, "T3", 2)
        wait_unseen(imap, "T3", 0)
        imap.run(("select", "T3"), ("uid", "STORE", "1:*", "-FLAGS", "(\\Seen)"))
        wait_unseen(imap, "T3", 0)  # flag change only (no EXISTS): the IDLE ran out, re-searched
    finally:
        assert server.stop() == 0
    imap.run(("select", "T3"), ("uid", "STORE", "1:*", "-FLAGS", "(\\Seen)"))
    assert search(imap, "T3", "UNSEEN") == [1, 2]
    server = start(imap, url, "T3", imap_idle=False)
    try:
        wait_unseen(imap, "T3", 0)
    finally:
        assert server.stop() == 0
    assert len(stored(url, "T3")) == 2 and tasks(url, "T3") == 2


def test_sigkill_mid_poll_loses_and_duplicates_nothing(imap, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    count = 40
    create(imap, "T4", *(message(f"batch {i:02d}") for i in range(count)))
    server = start(imap, url, "T4", imap_idle=False)
    deadline = time.monotonic() + WAIT
    while not stored(url, "T4") and time.monotonic() < deadline:
        time.sleep(0.005)
    server.kill()
    before = len(stored(url, "T4"))
    assert 0 < before < count, before
    server = start(imap, url, "T4", imap_idle=False)
    try:
        rows = wait_stored(url, "T4", count)
        wait_unseen(imap, "T4", 0)
    finally:
        assert server.stop() == 0
    rows = stored(url, "T4")
    assert len(rows) == count == len({r.source for r in rows}) == tasks(url, "T4")
    assert sorted(r.subject for r in rows) == [f"batch {i:02d}" for i in range(count)]


def test_a_new_uidvalidity_gives_new_source_keys(imap, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create(imap, "T5", message("before"))
    old = uidvalidity(imap, "T5")
    server = start(imap, url, "T5")
    try:
        wait_stored(url, "T5", 1)
    finally:
        assert server.stop() == 0
    imap.run(("delete", "T5"))
    create(imap, "T5", message("after"))  # UID 1 again, in a new UIDVALIDITY
    new = uidvalidity(imap, "T5")
    assert new != old
    server = start(imap, url, "T5")
    try:
        rows = wait_stored(url, "T5", 2)
        wait_unseen(imap, "T5", 0)
    finally:
        assert server.stop() == 0
    assert {(r.source, r.subject) for r in rows} == {
        (f"imap:alice@127.0.0.1/T5/{old}/1", "before"),
        (f"imap:alice@127.0.0.1/T5/{new}/1", "after")}


def test_a_malformed_message_is_stored_flagged(imap, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    broken = (b"From: c@customer.org\r\nSubject: broken\r\n"
              b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q\r\nno end\r\n")
    assert parse(broken).malformed
    create(imap, "T6", broken, b"\xff\xfe garbage without headers\r\n")
    server = start(imap, url, "T6")
    try:
        rows = wait_stored(url, "T6", 2)
        wait_unseen(imap, "T6", 0)
    finally:
        assert server.stop() == 0
    assert [r.malformed for r in rows] == [True, True]
    assert rows[1].raw.startswith(b"\xff\xfe garbage")


def test_move_to_a_folder_after_the_commit(imap, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create(imap, "T7", message("move me"))
    server = start(imap, url, "T7", imap_move_to="T7 done")
    try:
        wait_stored(url, "T7", 1)
        deadline = time.monotonic() + WAIT
        while search(imap, "T7", "ALL"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert search(imap, '"T7 done"', "SEEN") == [1]
    finally:
        assert server.stop() == 0
    assert len(stored(url, "T7")) == 1


def test_a_dropped_session_reconnects_and_resets_the_backoff(imap, tmp_path, capfd) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create(imap, "T9")
    server = start(imap, url, "T9", imap_interval=60.0)
    try:
        for i in range(2):
            time.sleep(0.3)  # the session is up and in IDLE
            imap.kick()
            imap.append(message(f"after kick {i}"), "T9")
            wait_stored(url, "T9", i + 1)
        wait_unseen(imap, "T9", 0)
    finally:
        assert server.stop() == 0
    log = capfd.readouterr().err
    retries = re.findall(r"e-mail: IMAP alice@127.0.0.1 \(T9\): .*; again in (\d+) s", log)
    assert retries == ["1", "1"], log  # each drop after a working session: the shortest wait
    assert len(stored(url, "T9")) == 2 and tasks(url, "T9") == 2


def test_a_bad_server_reply_means_reconnect_not_crash(tmp_path) -> None:
    """A server that answers nonsense: the session ends, the poller backs off and reconnects,
    the dispatcher keeps running (and stops cleanly)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    connections: list[bytes] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1 IDLE] fake\r\n")
                try:
                    connections.append(conn.recv(1000))
                    conn.sendall(b"%%% \x00 nonsense {x}\r\n")
                    conn.recv(1000)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    server = running.start(url, imap_host="127.0.0.1", imap_port=listener.getsockname()[1],
                           imap_user="u", imap_password="p", imap_queue="support")
    try:
        deadline = time.monotonic() + WAIT
        while len(connections) < 2:  # the first, then one after a 1 s backoff
            assert time.monotonic() < deadline and server.proc.poll() is None
            time.sleep(0.05)
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0
        done.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(("settings", "problem"), [
    ({"imap_user": "u"}, "imap_queue"),
    ({"imap_queue": "support"}, "imap_user"),
    ({"imap_user": "u", "imap_queue": "q", "imap_interval": 0.0}, "imap_interval"),
    ({"imap_user": "u", "imap_queue": "q", "imap_port": 0}, "imap_port"),
    ({"imap_user": "u", "imap_queue": "q", "imap_mailbox": " "}, "imap_mailbox"),
])
def test_imap_settings_are_checked_at_start(settings: dict, problem: str) -> None:
    with pytest.raises(InvalidValue, match=problem):
        check_imap(EmailSettings(imap_host="imap.example.com", **settings))
    check_imap(EmailSettings(**settings))  # no host: IMAP is off, nothing else is looked at
