"""A running `switchboard serve` under abuse, attacked as an attacker would (raw sockets from
several loopback source addresses, 127.0.0.x), checked as its users see it:
- bodies: a 300 MB Content-Length to /forms/contact, /cti/events and /healthz gets 413 at once
  without the body being sent; a chunked body past the form's cap is cut off with 413;
- slowloris: a request head dribbled a line at a time is closed at the head deadline (408);
- per source: the connection past `max_connections_per_ip` gets 503, the SMTP session past
  `smtp_sessions_per_ip_per_minute` gets `421 4.7.0`;
- descriptors: with RLIMIT_NOFILE 256, more dribbling connections than that (HTTP, SMTP and
  the console's WebSocket port) leave /healthz, an SMTP EHLO and a console handshake
  answering within a couple of seconds, and the log small (no accept() storm).
"""

from __future__ import annotations

import asyncio
import http.client
import smtplib
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dispatcher.runtime.running import (
    desk_env,
    free_port,
    prepare_support,
    relay,
    serving,
)
from tests.dispatcher.runtime.test_answers_e2e import SECRET, console

ANSWER_SECONDS = 2.0
NOFILE = 256
HUGE = 300 * 1024 * 1024


@dataclass
class Served:
    http: int
    smtp: int
    ws: int
    cti: int
    sip: int
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


def prepare(url: str) -> None:
    prepare_support(url)


@contextmanager
def server(tmp: Path, nofile: int | None, **extra: str) -> Iterator[Served]:
    url = f"sqlite:///{tmp / 'switchboard.db'}"
    prepare(url)
    cti, sip = free_port(), free_port()
    with relay() as (_, relay_port):
        env, ports = desk_env(
            tmp, url, relay_port, SECRET, SWITCHBOARD_EMAIL_FROM_ADDRESS="help@example.com",
            SWITCHBOARD_EMAIL_DEFAULT_QUEUE="support", SWITCHBOARD_LOG_LEVEL="INFO",
            SWITCHBOARD_PHONE_ENABLED="true", SWITCHBOARD_PHONE_SIP_ENABLED="true",
            SWITCHBOARD_PHONE_UDP_PORT=str(sip), SWITCHBOARD_PHONE_TCP_PORT=str(sip),
            SWITCHBOARD_PHONE_QUEUES="support=support",
            SWITCHBOARD_PHONE_CTI_ENABLED="true", SWITCHBOARD_PHONE_CTI_PORT=str(cti),
            SWITCHBOARD_PHONE_CTI_JWT_SECRET_FILE=str(tmp / "console.secret"),
            SWITCHBOARD_PHONE_CTI_DEFAULT_QUEUE="support", **extra)
        with serving(tmp, env, (ports.smtp, ports.ws, ports.http, cti, sip),
                     nofile=nofile) as log:
            yield Served(ports.http, ports.smtp, ports.ws, cti, sip, log)


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Iterator[Served]:
    """Short head deadline, small per-source limits."""
    with server(tmp_path_factory.mktemp("abuse-quick"), None,
                SWITCHBOARD_SERVER_HEADER_TIMEOUT="1.5",
                SWITCHBOARD_SERVER_MAX_CONNECTIONS_PER_IP="5",
                SWITCHBOARD_EMAIL_SMTP_SESSIONS_PER_IP_PER_MINUTE="3",
                SWITCHBOARD_EMAIL_AUTH_TRUSTED_RELAYS="127.0.0.31") as s:
        yield s


@pytest.fixture(scope="module")
def starved(tmp_path_factory) -> Iterator[Served]:
    """256 descriptors, the default deadlines."""
    with server(tmp_path_factory.mktemp("abuse-starved"), NOFILE,
                SWITCHBOARD_SERVER_MAX_CONNECTIONS_PER_IP="40") as s:
        yield s


def dial(port: int, source: str = "127.0.0.1", timeout: float = ANSWER_SECONDS
         ) -> socket.socket:
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def answer(s: socket.socket, seconds: float = ANSWER_SECONDS) -> bytes:
    """What the server sends until it closes (or `seconds` pass)."""
    s.settimeout(seconds)
    data = b""
    deadline = time.monotonic() + seconds
    with suppress(TimeoutError, ConnectionResetError):
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def closed(s: socket.socket, seconds: float = 1.0) -> bool:
    """The server closed `s` (EOF or reset) within `seconds`, sending nothing."""
    s.settimeout(seconds)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# ---------------------------------------------------------------------- bodies


@pytest.mark.parametrize(("method", "path", "kind"), [
    ("POST", "/forms/contact", "application/x-www-form-urlencoded"),
    ("POST", "/cti/events", "application/json"),
    ("POST", "/healthz", "application/json"),
    ("GET", "/healthz", "text/plain"),
])
def test_a_huge_announced_body_gets_413_before_it_is_sent(quick: Served, method: str,
                                                          path: str, kind: str) -> None:
    s = dial(quick.http, "127.0.0.21")
    started = time.monotonic()
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
              f"Content-Length: {HUGE}\r\n\r\n".encode())
    got = answer(s)
    s.close()
    assert got.startswith(b"HTTP/1.1 413 "), got[:200]
    assert time.monotonic() - started < ANSWER_SECONDS
    assert b"connection: close" in got.lower()


@pytest.mark.parametrize(("path", "length", "shape"), [
    ("/login", 4097, b'{"error": "bad_request", "message": "at most 4096 bytes"}'),
    ("/console/upload?name=a.txt", 10 * 1024 * 1024 + 1,
     b"request body too large: at most 10485760 bytes"),
])
def test_a_page_s_own_cap_is_kept_before_the_body_is_read(quick: Served, path: str,
                                                          length: int, shape: bytes) -> None:
    """The sign-in and the console's uploads state their own caps (below the site's)."""
    s = dial(quick.http, "127.0.0.22")
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              f"Content-Length: {length}\r\n\r\n".encode())
    got = answer(s)
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), got[:300]
    assert body.startswith(shape), body[:300]


@pytest.mark.parametrize(("path", "kind", "shape"), [
    ("/forms/contact", "application/json", b'{"error": "too_large", "message": "at most 65536'),
    ("/cti/events", "application/json", b'{"type": "error", "re": null, "code": "bad_m'),
    ("/forms/contact", "application/x-www-form-urlencoded", b"<!doctype html>"),
])
def test_the_413_is_in_the_resource_s_own_shape(quick: Served, path: str, kind: str,
                                               shape: bytes) -> None:
    s = dial(quick.http, "127.0.0.21")
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
              f"Content-Length: {HUGE}\r\n\r\n".encode())
    got = answer(s)
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), got[:300]
    assert body.lower().startswith(shape.lower()), body[:300]


def test_a_chunked_body_past_the_cap_is_cut_off_with_413(quick: Served) -> None:
    s = dial(quick.http, "127.0.0.22")
    s.sendall(b"POST /forms/contact HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/x-www-form-urlencoded\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"a" * 8192
    with suppress(OSError):  # the server may stop reading once it has answered
        for _ in range(10):  # 80 KB: past the form's 64 KB
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    got = answer(s)
    s.close()
    assert got.startswith(b"HTTP/1.1 413 "), got[:200]


def test_a_small_chunked_body_still_reaches_the_resource(quick: Served) -> None:
    s = dial(quick.http, "127.0.0.23")
    body = b'{"type":"call.arrived"}'
    s.sendall(b"POST /cti/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
              b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    got = answer(s)
    s.close()
    assert got.startswith(b"HTTP/1.1 401 "), got[:200]  # no token: the resource answered


# ---------------------------------------------------------------------- slowloris


def test_a_dribbled_request_head_is_closed_at_the_deadline(quick: Served) -> None:
    s = dial(quick.http, "127.0.0.24")
    started = time.monotonic()
    s.sendall(b"GET /healthz HTTP/1.1\r\n")
    got = b""
    s.settimeout(0.3)
    for i in range(20):  # a header line every 0.3 s for 6 s: each one resets an idle timer
        with suppress(TimeoutError):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        with suppress(OSError):
            s.sendall(b"X-Dribble-%d: x\r\n" % i)
    elapsed = time.monotonic() - started
    s.close()
    assert got.startswith(b"HTTP/1.1 408 "), got[:200]
    assert elapsed < 3.0, elapsed


def test_a_silent_connection_is_closed_at_the_deadline(quick: Served) -> None:
    s = dial(quick.http, "127.0.0.25")
    started = time.monotonic()
    got = answer(s, 4.0)
    s.close()
    assert got.startswith(b"HTTP/1.1 408 "), got[:200]
    assert time.monotonic() - started < 3.0


# ---------------------------------------------------------------------- per source


def test_the_connection_past_the_per_source_cap_gets_503(quick: Served) -> None:
    held = [dial(quick.http, "127.0.0.26") for _ in range(5)]
    try:
        extra = dial(quick.http, "127.0.0.26")
        got = answer(extra)
        extra.close()
        assert got.startswith(b"HTTP/1.1 503 "), got[:200]
        other = http.client.HTTPConnection("127.0.0.1", quick.http, timeout=ANSWER_SECONDS,
                                           source_address=("127.0.0.27", 0))
        other.request("GET", "/healthz")
        assert other.getresponse().status == 200  # another source is not affected
        other.close()
    finally:
        for s in held:
            s.close()


def test_the_sip_tcp_connection_past_the_per_source_cap_is_closed(quick: Served) -> None:
    held = [dial(quick.sip, "127.0.0.31") for _ in range(5)]
    try:
        extra = dial(quick.sip, "127.0.0.31")
        assert closed(extra), "the connection past the cap stayed open"
        extra.close()
        other = dial(quick.sip, "127.0.0.32")  # another source: kept open
        other.settimeout(0.5)
        with pytest.raises(TimeoutError):
            other.recv(1)
        other.close()
    finally:
        for s in held:
            s.close()


def test_the_smtp_session_past_the_rate_gets_421(quick: Served) -> None:
    for _ in range(3):
        with smtplib.SMTP("127.0.0.1", quick.smtp, timeout=ANSWER_SECONDS,
                          source_address=("127.0.0.28", 0)) as smtp:
            assert smtp.ehlo()[0] == 250
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP("127.0.0.1", quick.smtp, timeout=ANSWER_SECONDS,
                     source_address=("127.0.0.28", 0))
    assert refused.value.smtp_code == 421
    assert refused.value.smtp_error.startswith(b"4.7.0 ")
    with smtplib.SMTP("127.0.0.1", quick.smtp, timeout=ANSWER_SECONDS,
                      source_address=("127.0.0.29", 0)) as smtp:
        assert smtp.ehlo()[0] == 250  # another source is not affected


def test_a_trusted_relay_is_not_held_to_the_session_rate(quick: Served) -> None:
    """An MX in `auth_trusted_relays` hands over all mail from one address."""
    for _ in range(8):
        with smtplib.SMTP("127.0.0.1", quick.smtp, timeout=ANSWER_SECONDS,
                          source_address=("127.0.0.31", 0)) as smtp:
            assert smtp.ehlo()[0] == 250


def test_refusals_are_logged_a_few_times_not_once_each(quick: Served) -> None:
    for _ in range(30):
        s = dial(quick.http, "127.0.0.30")
        s.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n")
        answer(s, 0.5)
        s.close()
    refused = [line for line in quick.lines() if "127.0.0.30" in line]
    assert 1 <= len(refused) <= 2, refused


# ---------------------------------------------------------------------- descriptors


def test_more_dribblers_than_descriptors_leave_the_server_answering(starved: Served) -> None:
    before = len(starved.lines())
    attackers: list[socket.socket] = []
    targets = (starved.http, starved.smtp, starved.ws)
    try:
        for i in range(3 * NOFILE // 2):  # 384 connections from 12 sources
            source = f"127.0.1.{i // 32 + 1}"
            with suppress(OSError):
                s = dial(targets[i % 3], source)
                if i % 3 != 1:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
                attackers.append(s)
        time.sleep(0.5)

        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", starved.http, timeout=ANSWER_SECONDS)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
        with smtplib.SMTP("127.0.0.1", starved.smtp, timeout=ANSWER_SECONDS) as smtp:
            assert smtp.ehlo()[0] == 250

        async def handshake() -> None:
            client = await asyncio.wait_for(console(starved.ws, "a1", "agent"), ANSWER_SECONDS)
            await client.ws.close()

        asyncio.run(handshake())
        assert time.monotonic() - started < 3 * ANSWER_SECONDS
    finally:
        for s in attackers:
            s.close()
    lines = starved.lines()[before:]
    assert not any("out of system resource" in line or "Too many open files" in line
                   for line in lines), lines[-20:]
    assert len(lines) < 40, lines[-40:]
