"""Issue 13, the SIP side: an attacker against the real dispatcher with the phone edge (the
runtime's App, SQL store, router; tests/channels/phone/server.py) on 127.0.0.1, with its default
settings. The attacker speaks raw SIP over UDP from addresses of its own (127.0.0.2-...: all of
127/8 is loopback), the agents' phones are raw UDP clients computing digests as phones do, and
a real baresip 1.0 (Debian 12) registers with its default settings against a real
`switchboard serve` (default phone settings).

What is checked is what a peer gets (status, reason, headers) and what the server stored
(phone_bindings, tasks) or logged (its log file).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from channels.phone.parse import Response, parse
from channels.phone.registrar import parse_credentials
from dispatcher.storage import schema
from tests.channels.phone import running
from tests.dispatcher.runtime import running as rt
from tests.support import need_binary

pytestmark = pytest.mark.slow

AGENTS = ["replayed", "brute", "enum", "sha"]
H = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
PASSWORD = running.PASSWORD


def spec() -> dict:
    return {
        "settings": {"udp_port": 0, "tcp_port": 0, "register_min": 1,
                     "queues": "support=support,flood=flood"},
        "queues": [{"name": "support"}, {"name": "flood"}],
        "agents": [{"id": a, "user": a, "password": PASSWORD, "skills": {},
                    "queues": ["support"]} for a in AGENTS],
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[running.Server]:
    tmp = tmp_path_factory.mktemp("sip-abuse")
    s = running.start(f"sqlite:///{tmp / 'switchboard.db'}", spec(), tmp / "server.log")
    s.log_path = tmp / "server.log"
    yield s
    s.stop()


class Peer:
    """A SIP peer on its own loopback address: sends requests, reads the responses."""

    def __init__(self, server: running.Server, host: str) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind((host, 0))
        self.sock.settimeout(5)
        self.host, self.port = self.sock.getsockname()
        self.target = ("127.0.0.1", server.udp_port)
        self.uri = f"sip:127.0.0.1:{server.udp_port}"

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def final(self, call_id: str | None = None) -> Response:
        """The next response other than 100 Trying (for `call_id`, if given)."""
        while True:
            data, _ = self.sock.recvfrom(65535)
            resp = parse(data)
            if resp.status == 100 or (call_id is not None and resp.call_id != call_id):
                continue
            return resp

    def register(self, user: str, cseq: int, *, call_id: str, auth: str | None = None,
                 contact: str | None = None, tag: str = "t1") -> bytes:
        lines = [
            f"REGISTER {self.uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{os.urandom(6).hex()}"
            ";rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@127.0.0.1>;tag={tag}",
            f"To: <sip:{user}@127.0.0.1>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} REGISTER",
            f"Contact: {contact or f'<sip:{user}@{self.host}:{self.port}>'}",
            "Expires: 300",
        ]
        if auth:
            lines.append(f"Authorization: {auth}")
        return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()

    def challenge(self, user: str, call_id: str, algorithm: str = "MD5") -> dict[str, str]:
        self.send(self.register(user, 1, call_id=call_id))
        resp = self.final(call_id)
        assert resp.status == 401, resp
        for value in resp.values("www-authenticate"):
            params = parse_credentials(value)[1]
            if params.get("algorithm") == algorithm:
                return params
        raise AssertionError(f"no {algorithm} challenge in {resp.values('www-authenticate')}")

    def answer(self, params: dict, user: str, password: str = PASSWORD, algorithm: str = "MD5",
               nc: str | None = "00000001") -> str:
        h = H[algorithm]
        ha1 = h(f"{user}:{params['realm']}:{password}".encode()).hexdigest()
        ha2 = h(f"REGISTER:{self.uri}".encode()).hexdigest()
        if nc is None:  # RFC 2069, no qop
            response = h(f"{ha1}:{params['nonce']}:{ha2}".encode()).hexdigest()
            extra = ""
        else:
            response = h(f"{ha1}:{params['nonce']}:{nc}:0a4f113b:auth:{ha2}".encode()
                         ).hexdigest()
            extra = f', qop=auth, nc={nc}, cnonce="0a4f113b"'
        return (f'Digest username="{user}", realm="{params["realm"]}", '
                f'nonce="{params["nonce"]}", uri="{self.uri}", response="{response}", '
                f"algorithm={algorithm}{extra}")

    def invite(self, call_id: str, queue: str = "support") -> bytes:
        lines = [
            f"INVITE sip:{queue}@127.0.0.1:{self.target[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{os.urandom(6).hex()}"
            ";rport",
            "Max-Forwards: 70",
            f"From: <sip:+3225550100@{self.host}>;tag={os.urandom(4).hex()}",
            f"To: <sip:{queue}@127.0.0.1>",
            f"Call-ID: {call_id}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:caller@{self.host}:{self.port}>",
            "Content-Length: 0",
        ]
        return ("\r\n".join([*lines, "", ""])).encode()

    def close(self) -> None:
        self.sock.close()


def binding(server: running.Server, agent: str) -> tuple | None:
    found = running.rows(server.url, "SELECT contact, source FROM phone_bindings "
                         "WHERE agent_id = :a", a=agent)
    return tuple(found[0]) if found else None


def log_lines(server: running.Server, text: str) -> list[str]:
    return [line for line in server.log_path.read_text(errors="replace").splitlines()
            if text in line]


# ---------------------------------------------------------------- registrar


def test_captured_register_replayed_from_elsewhere_is_refused(server):
    phone, attacker = Peer(server, "127.0.0.1"), Peer(server, "127.0.0.2")
    # an answer without qop (RFC 2069) has no count: it is never accepted, only challenged
    params = phone.challenge("replayed", "rp-1")
    phone.send(phone.register("replayed", 2, call_id="rp-1",
                              auth=phone.answer(params, "replayed", nc=None)))
    assert phone.final("rp-1").status == 401
    assert binding(server, "replayed") is None
    # a qop=auth registration is accepted...
    params = phone.challenge("replayed", "rp-2")
    auth = phone.answer(params, "replayed")
    phone.send(phone.register("replayed", 2, call_id="rp-2", auth=auth))
    assert phone.final("rp-2").status == 200
    mine = binding(server, "replayed")
    assert mine[1] == f"udp:127.0.0.1:{phone.port}"
    # ...and the same credentials (same nonce count) replayed with the attacker's Contact
    # from another address are not: a fresh challenge, the phone's binding stays
    attacker.send(attacker.register("replayed", 3, call_id="rp-2", auth=auth,
                                    contact="<sip:evil@127.0.0.2:5099>"))
    resp = attacker.final("rp-2")
    assert resp.status == 401 and "stale=true" in resp.get("www-authenticate")
    assert binding(server, "replayed") == mine
    phone.close()
    attacker.close()


def test_brute_force_is_locked_out_and_the_agents_phone_still_registers(server):
    phone, attacker, other = (Peer(server, h) for h in ("127.0.0.1", "127.0.0.3", "127.0.0.4"))
    params = phone.challenge("brute", "bf-phone")
    phone.send(phone.register("brute", 2, call_id="bf-phone",
                              auth=phone.answer(params, "brute")))
    assert phone.final("bf-phone").status == 200
    answers = []
    for i in range(12):  # auth_max_failures = 10 by default
        call_id = f"bf-{i}"
        params = attacker.challenge("brute", call_id)
        attacker.send(attacker.register("brute", 2, call_id=call_id,
                                        auth=attacker.answer(params, "brute", f"guess{i}")))
        answers.append(attacker.final(call_id))
    assert {(r.status, r.reason) for r in answers} == {(403, "Forbidden")}
    # locked: the right password from the attacker's address gets the same 403
    params = attacker.challenge("brute", "bf-right")
    attacker.send(attacker.register("brute", 2, call_id="bf-right",
                                    auth=attacker.answer(params, "brute")))
    assert (attacker.final("bf-right").status, "Forbidden") == (403, "Forbidden")
    # the user is locked for other addresses too (decided: the lockout is per user)...
    params = other.challenge("brute", "bf-other")
    other.send(other.register("brute", 2, call_id="bf-other", auth=other.answer(params, "brute")))
    assert other.final("bf-other").status == 403
    # ...except the address the agent's phone is registered from: it re-registers
    params = phone.challenge("brute", "bf-phone")
    phone.send(phone.register("brute", 3, call_id="bf-phone",
                              auth=phone.answer(params, "brute")))
    assert phone.final("bf-phone").status == 200
    # 14 refusals from one address: at most one log line a minute
    assert len(log_lines(server, "REGISTER for brute from udp:127.0.0.3")) == 1
    for p in (phone, attacker, other):
        p.close()


def test_unknown_user_and_wrong_password_get_the_same_403(server):
    attacker = Peer(server, "127.0.0.5")
    params = attacker.challenge("enum", "en-1")
    attacker.send(attacker.register("enum", 2, call_id="en-1",
                                    auth=attacker.answer(params, "enum", "wrong")))
    wrong = attacker.final("en-1")
    params = attacker.challenge("nobody", "en-2")
    attacker.send(attacker.register("nobody", 2, call_id="en-2",
                                    auth=attacker.answer(params, "nobody", "wrong")))
    unknown = attacker.final("en-2")
    assert (wrong.status, wrong.reason) == (unknown.status, unknown.reason) == (403, "Forbidden")
    assert [k for k, _, _ in wrong.headers] == [k for k, _, _ in unknown.headers]
    attacker.close()


def test_sha256_is_offered_first_and_accepted_and_nonce_counts_cannot_be_reused(server):
    phone = Peer(server, "127.0.0.1")
    phone.send(phone.register("sha", 1, call_id="sha-1"))
    resp = phone.final("sha-1")
    offered = [parse_credentials(v)[1] for v in resp.values("www-authenticate")]
    assert [p["algorithm"] for p in offered] == ["SHA-256", "MD5"]
    assert all(p["qop"] == "auth" for p in offered)
    params = offered[0]
    # someone who saw the challenge sends a forged answer with a high nonce count first: it is
    # refused, and does not use up the phone's counts (checked only after the digest)
    forger = Peer(server, "127.0.0.9")
    forger.send(forger.register("sha", 2, call_id="sha-1", auth=forger.answer(
        params, "sha", "guess", algorithm="SHA-256", nc="00000009")))
    assert forger.final("sha-1").status == 403
    forger.close()
    phone.send(phone.register("sha", 2, call_id="sha-1",
                              auth=phone.answer(params, "sha", algorithm="SHA-256")))
    assert phone.final("sha-1").status == 200
    # the same nonce count again (a new transaction): refused with a fresh nonce
    phone.send(phone.register("sha", 3, call_id="sha-1",
                              auth=phone.answer(params, "sha", algorithm="SHA-256")))
    resp = phone.final("sha-1")
    assert resp.status == 401 and "stale=true" in resp.get("www-authenticate")
    # the next count is fine
    phone.send(phone.register("sha", 4, call_id="sha-1", auth=phone.answer(
        params, "sha", algorithm="SHA-256", nc="00000002")))
    assert phone.final("sha-1").status == 200
    phone.close()


BARESIP_CONFIG = """\
poll_method		epoll
sip_listen		127.0.0.1:0
module_path		/usr/lib/baresip/modules
module			g711.so
module_app		account.so
audio_player		none
audio_source		none
audio_alert		none
"""


def test_baresip_registers_with_its_defaults_on_switchboard_serve(tmp_path):
    """baresip 1.0 (Debian 12) with a plain account line, against `switchboard serve` with the
    default digest settings; the registration shows in `switchboard phones list`."""
    binary = need_binary("baresip")
    if not Path("/usr/lib/baresip/modules/account.so").exists():
        pytest.fail("baresip's modules are not in /usr/lib/baresip/modules")
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    schema.upgrade(url)
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    for args in (["queues", "add", "support"], ["agents", "add", "bare", "--queues", "support"],
                 ["phones", "set", "bare", "--user", "bare", "--password-file",
                  str(tmp_path / "pw")]):
        done = rt.run("--database", url, *args, cwd=tmp_path)
        assert done.code == 0, done.err
    # Text, as operators write it (`openssl rand -hex 32`): the key file is read stripped, so
    # 32 random bytes were one short whenever one at either end was a blank (1 run in ~20).
    (tmp_path / "jwt.secret").write_text(os.urandom(32).hex())
    http, sip = rt.free_port(), running.free_udp_port()
    env = rt.base_env(
        SWITCHBOARD_DATABASE_URL=url, SWITCHBOARD_SERVER_HTTP_PORT=str(http),
        SWITCHBOARD_EMAIL_ENABLED="false", SWITCHBOARD_CONSOLE_PORT=str(rt.free_port()),
        SWITCHBOARD_CONSOLE_JWT_SECRET_FILE=str(tmp_path / "jwt.secret"),
        SWITCHBOARD_PHONE_ENABLED="true", SWITCHBOARD_PHONE_HOST="127.0.0.1",
        SWITCHBOARD_PHONE_UDP_PORT=str(sip), SWITCHBOARD_PHONE_TCP_PORT="-1",
        SWITCHBOARD_PHONE_QUEUES="support=support")
    home = tmp_path / "baresip"
    home.mkdir()
    (home / "config").write_text(BARESIP_CONFIG)
    (home / "accounts").write_text(
        f"<sip:bare@127.0.0.1:{sip};transport=udp>;auth_pass={PASSWORD};regint=60\n")
    with rt.serving(tmp_path, env, [http]) as log:
        with open(home / "baresip.log", "wb") as out:
            proc = subprocess.Popen([binary, "-f", str(home)], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            listed = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                done = rt.run("--database", url, "phones", "list", "--json", cwd=tmp_path,
                              env=env)
                assert done.code == 0, done.err
                (listed,) = json.loads(done.out)
                if listed["contact"]:
                    break
                time.sleep(0.5)
            baresip = (home / "baresip.log").read_text(errors="replace")
            assert listed["contact"] and "@127.0.0.1:" in listed["contact"], (
                f"{listed}\n{baresip}\n{log.read_text(errors='replace')[-3000:]}")
            assert "200 OK" in baresip
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# ---------------------------------------------------------------- calls


def test_long_or_reused_call_id_is_400_logged_once(server):
    caller = Peer(server, "127.0.0.6")
    for i in range(50):
        call_id = f"{i:03d}-" + "x" * 300
        caller.send(caller.invite(call_id))
        resp = caller.final(call_id)
        assert resp.status == 400 and resp.reason.startswith("Bad Request ("), resp
    assert len(log_lines(server, "from udp:127.0.0.6")) == 1
    assert not log_lines(server, " ERROR ")
    # a Call-ID of a call that has ended (queued, cancelled: abandoned) is refused too
    caller.send(caller.invite("reused-1"))
    queued = caller.final("reused-1")
    assert queued.status == 182
    cancel = "\r\n".join([
        f"CANCEL sip:support@127.0.0.1:{server.udp_port} SIP/2.0",
        f"Via: {queued.get('via')}", "Max-Forwards: 70", f"From: {queued.get('from')}",
        "To: <sip:support@127.0.0.1>", "Call-ID: reused-1", "CSeq: 1 CANCEL",
        "Content-Length: 0", "", ""]).encode()
    caller.send(cancel)
    got = {caller.final("reused-1").status for _ in range(2)}
    assert got == {200, 487}
    server.wait_for("task.abandoned", timeout=10)
    caller.send(caller.invite("reused-1"))
    resp = caller.final("reused-1")
    assert resp.status == 400, resp
    assert not log_lines(server, " ERROR ")
    caller.close()


def test_invite_flood_stores_at_most_the_burst_and_other_sources_still_queue(server):
    flood = Peer(server, "127.0.0.7")
    started = time.monotonic()
    invites = {f"flood-{i}": flood.invite(f"flood-{i}", queue="flood") for i in range(200)}
    for data in invites.values():
        flood.send(data)
    answers: dict[str, Response] = {}
    flood.sock.settimeout(0.5)
    for _ in range(20):  # UDP: what the kernel dropped is sent again, as timer A would
        try:
            while len(answers) < len(invites):
                resp = flood.final()
                answers.setdefault(resp.call_id, resp)
            break
        except TimeoutError:
            for call_id, data in invites.items():
                if call_id not in answers:
                    flood.send(data)
    elapsed = time.monotonic() - started
    statuses = [r.status for r in answers.values()]
    queued, refused = statuses.count(182), statuses.count(480)
    assert queued + refused == 200, sorted(set(statuses))
    assert 20 <= queued <= 20 + 5 * elapsed + 1  # burst 20, 5/s (defaults)
    sample = next(r for r in answers.values() if r.status == 480)
    assert sample.get("retry-after") == "1"
    (stored,) = running.rows(server.url, "SELECT count(*) FROM tasks WHERE queue = 'flood'")
    assert stored[0] == queued
    # a caller from another address is not affected
    other = Peer(server, "127.0.0.8")
    other.send(other.invite("not-flood", queue="flood"))
    assert other.final("not-flood").status == 182
    assert len(log_lines(server, "INVITEs from 127.0.0.7")) == 1
    flood.close()
    other.close()
