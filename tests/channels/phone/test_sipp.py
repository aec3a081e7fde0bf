"""sipp as the caller and as the agents' desk phones, against the real dispatcher (the runtime's
App: SQL store, group commit, router, Calls) with the phone edge on 127.0.0.1 (issue 5 tests).

One server for the module; each case has its own queue (its own SIP address) and its own agents,
so that presence from one case (RONA makes an agent not_responding) cannot leak into another.
The agent phones register with digest auth (agent_register.xml) and answer, refuse or ignore
the INVITE with an out-of-call scenario.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.channels.phone import running
from tests.support import need_binary

pytestmark = pytest.mark.slow

CASES = {  # queue -> (offer timeout, agents)
    "answered": (20.0, ["ans-a"]),
    "reject": (20.0, ["rej-a", "rej-b"]),
    "rona": (2.0, ["rona-a", "rona-b"]),
    "cancel": (20.0, []),
    "loss1": (20.0, ["loss1-a"]),
    "loss2": (20.0, ["loss2-a"]),
    "tcp": (20.0, ["tcp-a"]),
    "expiry": (20.0, ["exp-a"]),
    "hangup": (20.0, ["hup-a"]),
}


def spec() -> dict:
    return {
        "settings": {"udp_port": 0, "tcp_port": 0,
                     "queues": ",".join(f"{q}={q}" for q in CASES),
                     "digest_algorithms": "MD5,SHA-256", "register_min": 1,
                     "queued_interval": 1.0},
        "queues": [{"name": q, "wrap_up_seconds": 1.0, "offer_timeout": t}
                   for q, (t, _) in CASES.items()],
        "agents": [{"id": a, "user": a, "password": running.PASSWORD, "skills": {},
                    "queues": [q]} for q, (_, agents) in CASES.items() for a in agents],
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[running.Server]:
    tmp = tmp_path_factory.mktemp("sipp-server")
    s = running.start(f"sqlite:///{tmp / 'switchboard.db'}", spec(), tmp / "server.log")
    yield s
    s.stop()


class Phones:
    """The sipp processes of one case, stopped at its end."""

    def __init__(self, tmp: Path, server: running.Server, queue: str) -> None:
        self.binary = need_binary("sipp")
        self.tmp, self.server, self.queue = tmp, server, queue
        self.target = f"127.0.0.1:{server.udp_port}"
        self.procs: list[running.Sipp] = []

    def agent(self, agent_id: str, ooc: str, *extra: str) -> running.Sipp:
        p = running.sipp(self.binary, self.tmp / f"agent-{agent_id}", self.target,
                         "agent_register.xml", "-s", agent_id, "-au", agent_id,
                         "-ap", running.PASSWORD, "-p", str(running.free_udp_port()),
                         "-m", "1", "-timeout", "45s", "-timeout_error", *extra, ooc=ooc)
        self.procs.append(p)
        self.server.wait_for("agent.device", agent_id=agent_id, reachable=True)
        return p

    def caller(self, scenario: str = "customer_call.xml", *extra: str) -> running.Sipp:
        p = running.sipp(self.binary, self.tmp / f"caller-{len(self.procs)}", self.target,
                         scenario, "-s", self.queue, "-p", str(running.free_udp_port()),
                         "-m", "1", "-timeout", "40s", "-timeout_error", *extra)
        self.procs.append(p)
        return p

    def task(self) -> tuple:
        (row,) = running.rows(self.server.url, "SELECT id, state, agent_id FROM tasks "
                              "WHERE queue = :q", q=self.queue)
        return tuple(row)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


@pytest.fixture
def phones(server, tmp_path, request) -> Iterator:
    made = []

    def make(queue: str) -> Phones:
        p = Phones(tmp_path, server, queue)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def events_of(server: running.Server, task_id: str) -> list[str]:
    return [r[0] for r in running.rows(
        server.url, "SELECT kind FROM task_events WHERE task_id = :t ORDER BY id", t=task_id)]


def test_queued_then_answered_then_bye_wraps_up(phones):
    p = phones("answered")
    agent = p.agent("ans-a", "agent_answer.xml")
    caller = p.caller()
    assert caller.wait() == 0, caller.logs()
    assert agent.wait() == 0, agent.logs()
    p.server.wait_for("call.answered", agent_id="ans-a")
    ended = p.server.wait_for("call.ended", agent_id="ans-a")
    assert ended["data"]["by"] == "caller"
    assert ended["data"]["talk_seconds"] >= 0.9  # the scenario talks 1 s
    p.server.wait_for("task.wrap_up", agent_id="ans-a")
    task_id, _, _ = p.task()
    p.server.wait_for("task.completed", task_id=task_id, timeout=5)  # 1 s wrap-up ran out
    assert p.task()[1:] == ("completed", "ans-a")
    kinds = events_of(p.server, task_id)
    for kind in ("task.offered", "offer.accepted", "call.answered", "task.wrap_up", "call.ended",
                 "task.completed"):
        assert kind in kinds
    text = "".join(m.read_text(errors="replace") for m in p.tmp.glob("caller-*/*_messages.log"))
    assert "182 Queued" in text and "Record-Route:" in text


def test_agent_hangs_up_bye_passes_through_and_wraps_up(phones):
    p = phones("hangup")
    agent = p.agent("hup-a", "agent_hangup.xml")
    caller = p.caller("customer_hungup.xml")
    assert caller.wait() == 0, caller.logs()
    assert agent.wait() == 0, agent.logs()
    ended = p.server.wait_for("call.ended", agent_id="hup-a")
    assert ended["data"]["by"] == "agent"
    p.server.wait_for("task.wrap_up", agent_id="hup-a")


def test_agent_rejects_then_next_agent_answers(phones):
    p = phones("reject")
    first = p.agent("rej-a", "agent_reject.xml")
    caller = p.caller()
    p.server.wait_for("offer.rejected", agent_id="rej-a")
    second = p.agent("rej-b", "agent_answer.xml")  # registers: the router offers it the call
    assert caller.wait() == 0, caller.logs()
    assert first.wait() == 0, first.logs()
    assert second.wait() == 0, second.logs()
    p.server.wait_for("call.answered", agent_id="rej-b")
    _, state, agent_id = p.task()
    assert agent_id == "rej-b" and state in ("wrap_up", "completed")


def test_agent_does_not_answer_rona_then_next_agent(phones):
    p = phones("rona")
    first = p.agent("rona-a", "agent_noanswer.xml")
    caller = p.caller()
    p.server.wait_for("offer.expired", agent_id="rona-a", timeout=10)
    p.server.wait_for("agent.status", agent_id="rona-a", status="not_responding")
    assert first.wait() == 0, first.logs()  # it saw the CANCEL, answered 487, got the ACK
    second = p.agent("rona-b", "agent_answer.xml")
    assert caller.wait() == 0, caller.logs()
    assert second.wait() == 0, second.logs()
    p.server.wait_for("call.answered", agent_id="rona-b")
    task_id, _, agent_id = p.task()
    assert agent_id == "rona-b"
    kinds = events_of(p.server, task_id)
    assert kinds.index("offer.expired") < kinds.index("call.answered")


def test_caller_hangs_up_while_queued_is_abandoned(phones):
    p = phones("cancel")
    caller = p.caller("customer_cancel.xml")  # nobody serves this queue: CANCEL after 1 s
    assert caller.wait() == 0, caller.logs()
    task_id, state, _ = p.task()
    abandoned = p.server.wait_for("task.abandoned", task_id=task_id)
    assert abandoned["data"]["waited"] >= 0.9
    assert abandoned["data"]["reason"] == "caller_cancel"
    assert p.task()[1] == "abandoned"


@pytest.mark.parametrize("queue", ["loss1", "loss2"])
def test_retransmissions_under_loss(phones, queue):
    """sipp drops 15 % of the packets on both phones; the transaction layers (theirs and ours:
    timers A, E, G, 2xx retransmissions passed through) still get the call answered and
    ended. The phones' scenarios are those of a phone under loss: the agent's answers a
    retransmitted INVITE and stays for retransmitted BYEs (agent_answer_lossy.xml), the
    caller takes only the BYE's own 200 as its answer (customer_call.xml)."""
    p = phones(queue)
    lost = ("-lost", "15")
    agent = p.agent(f"{queue}-a", "agent_answer_lossy.xml", *lost)
    caller = p.caller("customer_call.xml", *lost)
    # On failure, both phones' logs: the caller's alone cannot tell a lost answer from RONA.
    assert caller.wait() == 0, caller.logs() + "\n=== the agent's phone\n" + agent.logs()
    assert agent.wait() == 0, agent.logs()
    p.server.wait_for("call.ended", agent_id=f"{queue}-a")


def test_caller_and_agent_over_tcp(phones):
    p = phones("tcp")
    p.target = f"127.0.0.1:{p.server.tcp_port}"
    agent = p.agent("tcp-a", "agent_answer.xml", "-t", "t1")
    caller = p.caller("customer_call.xml", "-t", "t1")
    assert caller.wait() == 0, caller.logs()
    assert agent.wait() == 0, agent.logs()
    p.server.wait_for("call.ended", agent_id="tcp-a")


def test_registration_digest_wrong_password_and_expiry_with_the_real_core(server):
    """A phone registering by hand (digest MD5, qop=auth): a wrong password is 403 and binds
    nothing; the right one binds for 2 s, the agent becomes reachable, then the registration
    expires and the agent is unreachable for phone tasks again."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        target = ("127.0.0.1", server.udp_port)

        def register(cseq: int, password: str | None, nonce: str | None) -> tuple[int, str]:
            auth = ""
            if nonce is not None:
                ha1 = hashlib.md5(f"exp-a:switchboard:{password}".encode()).hexdigest()
                ha2 = hashlib.md5(b"REGISTER:sip:127.0.0.1").hexdigest()
                resp = hashlib.md5(f"{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}".encode())
                auth = (f'Authorization: Digest username="exp-a", realm="switchboard", '
                        f'nonce="{nonce}", uri="sip:127.0.0.1", response="{resp.hexdigest()}", '
                        f'algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"\r\n')
            msg = (f"REGISTER sip:127.0.0.1 SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKexp{cseq}\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:exp-a@127.0.0.1>;tag=e1\r\n"
                   f"To: <sip:exp-a@127.0.0.1>\r\nCall-ID: exp-{port}\r\n"
                   f"CSeq: {cseq} REGISTER\r\nContact: <sip:exp-a@127.0.0.1:{port}>\r\n"
                   f"Expires: 2\r\n{auth}Content-Length: 0\r\n\r\n")
            sock.sendto(msg.encode(), target)
            data = sock.recvfrom(65535)[0].decode()
            found = re.search(r'algorithm=MD5[^\r]*|nonce="([^"]+)"[^\r]*algorithm=MD5', data)
            nonces = re.findall(r'WWW-Authenticate: Digest realm="[^"]+", nonce="([^"]+)"', data)
            return int(data.split(" ", 2)[1]), (nonces[0] if nonces and found else "")

        status, nonce = register(1, None, None)
        assert status == 401 and nonce
        assert register(2, "wrong", nonce)[0] == 403
        status, nonce = register(3, None, None)
        assert register(4, running.PASSWORD, nonce)[0] == 200
    bound = server.wait_for("agent.device", agent_id="exp-a", reachable=True)
    server.wait_for("agent.device", agent_id="exp-a", reachable=False, timeout=10, after=bound)
    assert not running.rows(server.url, "SELECT * FROM phone_bindings WHERE agent_id = 'exp-a'")
