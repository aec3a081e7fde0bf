"""Presence from the phone against the real dispatcher (the runtime's App, SQL store, router,
Calls; tests/channels/phone/server.py) with sipp as phones and callers (issue 18, item 3):

- a phone SUBSCRIBEs (digest) to an agent's dialogs and sees the call we hand to that agent
  go early → confirmed → terminated in its NOTIFYs, then un-SUBSCRIBEs;
- an agent's phone that publishes its dialog state (Allow-Events: dialog) gets our SUBSCRIBE;
  while it NOTIFYs a call of its own the queued call is not offered to that agent; when it
  NOTIFYs the call terminated, the agent gets it;
- a phone that answers 486 passes the call to the next agent and gets no call for
  `busy_seconds` (2 s here), then is offered the next one.

One server for the module; each case has its own queue and agents. E-mail offers to an agent
engaged on the phone (the interruption matrix) are covered by
tests/dispatcher/service/test_calls_busy.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from channels.phone.config import PhoneSettings
from tests.channels.phone import running
from tests.support import need_binary

pytestmark = pytest.mark.slow

BUSY_SECONDS = 2.0
CASES = {  # queue -> agents (the watcher takes no calls: a queue of its own, never called)
    "pres-notify": ["pn-agent"],
    "pres-watch": ["pw-agent"],
    "pres-busy": ["pb-busy", "pb-next"],
    "pres-watchers": ["pn-watch"],
}


def spec() -> dict:
    settings = {"udp_port": 0, "tcp_port": 0, "queues": ",".join(f"{q}={q}" for q in CASES),
                "digest_algorithms": "MD5,SHA-256", "register_min": 1, "queued_interval": 1.0,
                "busy_seconds": BUSY_SECONDS}
    if "media_enabled" in PhoneSettings.__dataclass_fields__:
        settings["media_enabled"] = False  # what callers hear is not what these tests are about
    return {
        "settings": settings,
        # pres-busy: the next agent wraps up long enough for the busy one to be free first
        "queues": [{"name": q, "wrap_up_seconds": 10.0 if q == "pres-busy" else 1.0,
                    "offer_timeout": 20.0} for q in CASES],
        "agents": [{"id": a, "user": a, "password": running.PASSWORD, "skills": {},
                    "queues": [q]} for q, agents in CASES.items() for a in agents],
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[running.Server]:
    tmp = tmp_path_factory.mktemp("sipp-presence")
    s = running.start(f"sqlite:///{tmp / 'switchboard.db'}", spec(), tmp / "server.log")
    yield s
    s.stop()


class Phones:
    def __init__(self, tmp: Path, server: running.Server) -> None:
        self.binary = need_binary("sipp")
        self.tmp, self.server = tmp, server
        self.target = f"127.0.0.1:{server.udp_port}"
        self.procs: list[running.Sipp] = []

    def agent(self, agent_id: str, ooc: str, main: str = "agent_register.xml") -> running.Sipp:
        p = running.sipp(self.binary, self.tmp / f"agent-{agent_id}", self.target, main,
                         "-s", agent_id, "-au", agent_id, "-ap", running.PASSWORD,
                         "-p", str(running.free_udp_port()), "-m", "1", "-timeout", "45s",
                         "-timeout_error", ooc=ooc)
        self.procs.append(p)
        self.server.wait_for("agent.device", agent_id=agent_id, reachable=True)
        return p

    def watcher(self, user: str, agent_id: str) -> running.Sipp:
        p = running.sipp(self.binary, self.tmp / f"watcher-{user}", self.target,
                         "watcher_subscribe.xml", "-s", agent_id, "-key", "watcher", user,
                         "-au", user, "-ap", running.PASSWORD,
                         "-p", str(running.free_udp_port()), "-m", "1", "-timeout", "45s",
                         "-timeout_error")
        self.procs.append(p)
        return p

    def caller(self, queue: str) -> running.Sipp:
        p = running.sipp(self.binary, self.tmp / f"caller-{len(self.procs)}", self.target,
                         "customer_call.xml", "-s", queue, "-p", str(running.free_udp_port()),
                         "-m", "1", "-timeout", "40s", "-timeout_error")
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


@pytest.fixture
def phones(server, tmp_path) -> Iterator[Phones]:
    p = Phones(tmp_path, server)
    yield p
    p.stop()


def messages(p: running.Sipp) -> str:
    return "".join(f.read_text(errors="replace") for f in sorted(p.cwd.glob("*_messages.log")))


def wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s")
        time.sleep(0.05)


def index(server: running.Server, event: dict) -> int:
    return next(i for i, e in enumerate(server.events) if e is event)


def test_a_watcher_sees_the_call_we_hand_to_the_agent(phones):
    agent = phones.agent("pn-agent", "agent_answer.xml")
    watcher = phones.watcher("pn-watch", "pn-agent")
    wait_until(lambda: "Subscription-State: active" in messages(watcher))
    caller = phones.caller("pres-notify")
    assert caller.wait() == 0, caller.logs()
    assert agent.wait() == 0, agent.logs()
    assert watcher.wait() == 0, watcher.logs()
    log = messages(watcher)
    states = re.findall(r"<state(?: event=\"[^\"]*\")?>(\w+)</state>", log)
    assert [s for s in states if s in ("early", "confirmed", "terminated")] == \
        ["early", "confirmed", "terminated"], states
    versions = [int(v) for v in re.findall(r'<dialog-info [^>]*version="(\d+)"', log)]
    assert versions == sorted(versions) and len(set(versions)) == len(versions) >= 4
    assert "Subscription-State: terminated" in log  # the un-SUBSCRIBE's last NOTIFY
    assert "application/dialog-info+xml" in log


def test_a_phone_on_a_call_of_its_own_gets_no_offer_until_it_says_idle(phones):
    server = phones.server
    agent = phones.agent("pw-agent", "agent_dialog.xml", main="agent_register_dialog.xml")
    busy = server.wait_for("agent.device", agent_id="pw-agent", engaged=True)
    caller = phones.caller("pres-watch")
    queued = server.wait_for("task.queued", after=busy, timeout=10)
    idle = server.wait_for("agent.device", after=busy, agent_id="pw-agent", engaged=False,
                           timeout=10)
    assert index(server, queued) < index(server, idle), "the call came after the phone idled"
    offered = server.wait_for("task.offered", task_id=queued["task_id"], agent_id="pw-agent")
    assert index(server, offered) > index(server, idle)
    assert caller.wait() == 0, caller.logs()
    assert agent.wait() == 0, agent.logs()
    server.wait_for("call.answered", agent_id="pw-agent")
    text = messages(agent)
    assert "SUBSCRIBE sip:pw-agent@" in text and "Event: dialog" in text


def test_486_passes_the_call_on_and_keeps_the_phone_off_calls_for_busy_seconds(phones):
    server = phones.server
    busy_phone = phones.agent("pb-busy", "agent_busy_then_answer.xml")
    first = phones.caller("pres-busy")
    rejected = server.wait_for("offer.rejected", agent_id="pb-busy")
    assert rejected["data"]["reason"] == "busy"
    engaged = server.wait_for("agent.device", agent_id="pb-busy", engaged=True)
    second = phones.caller("pres-busy")
    next_phone = phones.agent("pb-next", "agent_answer.xml")
    answered = server.wait_for("call.answered", agent_id="pb-next")
    assert answered["task_id"] == rejected["task_id"]  # the refused call went to the next agent
    free = server.wait_for("agent.device", after=engaged, agent_id="pb-busy", engaged=False,
                           timeout=10)
    between = server.events[index(server, engaged) + 1:index(server, free)]
    assert not [e for e in between if e["kind"] == "task.offered"
                and e["agent_id"] == "pb-busy"], "offered while busy"
    assert free["data"]["engaged"] is False
    taken = server.wait_for("call.answered", after=free, agent_id="pb-busy", timeout=10)
    assert taken["task_id"] != rejected["task_id"]  # the second call, once the phone is free
    for p in (first, second, busy_phone, next_phone):
        assert p.wait() == 0, p.logs()
