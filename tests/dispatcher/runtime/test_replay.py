"""`switchboard replay` (dispatcher/runtime/replay.py, replay_day.py, replay_command.py,
dispatcher/storage/day_log.py): a day recorded through the real path (the service layer on a
SqlStore on a SQLite file, timers on a virtual clock) replayed on the real router.

The recorded day (2026-03-03, UTC): queues `support` (calls and e-mails, 30 s of wrap-up),
`sales` (calls) and `letters` (e-mails agent a3 picks from its list); four agents signing in at different times, taking breaks and leaving; calls
spread over the morning with a burst at 09:30 that makes callers wait, e-mails with a deadline;
each agent accepts after their own delays; one offer declined, one missed (the agent comes back
45 s later), one caller hanging up (nobody takes sales calls before 09:00); calls wrapped up,
some ended early by the agent, the others by the queue's timer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from twisted.internet.defer import ensureDeferred

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.queues import Mode, Queue
from dispatcher.domain.tasks import Channel
from dispatcher.runtime.cli import build_parser
from dispatcher.runtime.replay import Setup, replay, with_copies
from dispatcher.runtime.replay_command import build_setup, period
from dispatcher.runtime.replay_day import day_from_events
from dispatcher.storage import schema
from dispatcher.storage.day_log import read_period
from tests.dispatcher.runtime.running import base_env, run, run_many, sql_stack

DAY = "2026-03-03"
START = dt.datetime(2026, 3, 3, tzinfo=dt.UTC).timestamp()
H = 3600.0


def at(hhmm: str, seconds: float = 0.0) -> float:
    h, m = map(int, hhmm.split(":"))
    return START + h * H + m * 60 + seconds


# agent -> (skills, queues, channels, accept delay, [(time, status, reason)])
AGENTS = {
    "a1": ({"support": 5}, {"support"}, {Channel.PHONE, Channel.EMAIL}, 2.0,
           [("08:00", "available", None), ("10:00", "break", "lunch"),
            ("10:15", "available", None), ("12:00", "offline", None)]),
    "a2": ({"support": 3}, {"support"}, {Channel.PHONE}, 5.0,
           [("08:30", "available", None), ("13:00", "offline", None)]),
    "a3": ({"support": 4}, {"support", "letters"}, {Channel.EMAIL}, 8.0,
           [("08:00", "available", None), ("11:00", "offline", None)]),
    "a4": ({"support": 5, "sales": 5}, {"support", "sales"}, {Channel.PHONE}, 3.0,
           [("09:00", "available", None), ("11:00", "break", "training"),
            ("11:20", "available", None), ("13:30", "offline", None)]),
}
SIGN_IN_GAP = 7.0  # agents' statuses of the same minute, this many seconds apart


@dataclass
class Recording:
    tasks: dict[str, dict] = field(default_factory=dict)  # task -> agent, waited
    declined: list[tuple[str, str]] = field(default_factory=list)
    missed: list[tuple[str, str]] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)


class Desks:
    """The agents and customers of the recorded day, on the stack's clock."""

    def __init__(self, stack, rng: random.Random) -> None:
        self.stack, self.rng = stack, rng
        self.clock = stack.clock
        self.rec = Recording()
        self.created: dict[str, float] = {}
        self.errors: list = []
        self.calls = 0
        stack.assignment.listen(self.heard)

    def later(self, when: float, fn, *args) -> None:
        self.clock.callLater(max(0.0, when - self.clock.seconds()), fn, *args)

    def check(self, d) -> None:
        d.addErrback(self.errors.append)

    def heard(self, outcome) -> None:
        for offer in outcome.offers:
            n = sum(1 for o in self.stack.offers_made() if o.task_id == offer.task_id)
            if offer.task_id == "t6" and n == 1:  # declined, after 4 s
                self.rec.declined.append((offer.task_id, offer.agent_id))
                self.later(self.clock.seconds() + 4.0, self.decide, "reject", offer)
            elif offer.task_id == "t12" and n == 1:  # missed: the offer times out
                self.rec.missed.append((offer.task_id, offer.agent_id))
            else:
                delay = AGENTS[offer.agent_id][3] + self.rng.uniform(0, 3)
                self.later(self.clock.seconds() + delay, self.decide, "accept", offer)
        for e in outcome.events:
            if e.kind == ev.TASK_ASSIGNED:
                self.rec.tasks[e.task_id] = {"agent": e.agent_id,
                                             "waited": e.at - self.created[e.task_id]}
                task = self.stack.router.tasks[e.task_id]
                if task.channel is Channel.PHONE:
                    self.later(e.at + self.rng.uniform(60, 400), self.talked, e.agent_id,
                               e.task_id)
                else:
                    self.later(e.at + self.rng.uniform(120, 900), self.done, e.agent_id,
                               e.task_id)
            elif e.kind == ev.OFFER_EXPIRED:
                self.later(e.at + 45.0, self.back, e.agent_id)
            elif e.kind == ev.TASK_ABANDONED:
                self.rec.abandoned.append(e.task_id)

    def decide(self, what: str, offer) -> None:
        if what == "accept":
            self.check(self.stack.sessions.accept(offer.agent_id, offer.id).addErrback(
                lambda f: None))  # withdrawn meanwhile (a break)
        else:
            self.check(self.stack.sessions.reject(offer.agent_id, offer.id, "busy"))

    def talked(self, agent_id: str, task_id: str) -> None:
        task = self.stack.router.tasks.get(task_id)
        if task is None or task.agent_id != agent_id:
            return
        self.check(self.stack.sessions.wrap_up(agent_id, task_id))
        if self.rng.random() < 0.5:  # ends the wrap-up early; else the queue's timer does
            self.later(self.clock.seconds() + self.rng.uniform(5, 25), self.done, agent_id,
                       task_id)

    def done(self, agent_id: str, task_id: str) -> None:
        task = self.stack.router.tasks.get(task_id)
        if task is not None and task.agent_id == agent_id:
            self.check(self.stack.sessions.complete(agent_id, task_id, "solved"))

    def presence(self, agent_id: str, status: str, reason: str | None) -> None:
        """Agents finish what they hold before they leave (offline would requeue it)."""
        if status == "offline" and self.stack.router.agents[agent_id].held:
            self.later(self.clock.seconds() + 30.0, self.presence, agent_id, status, reason)
            return
        self.check(self.stack.sessions.set_status(agent_id, status, reason))

    def back(self, agent_id: str) -> None:
        if self.stack.router.agents[agent_id].status is Presence.NOT_RESPONDING:
            self.check(self.stack.sessions.set_status(agent_id, "available"))

    def arrive(self, channel: Channel, queue: str, patience: float | None = None) -> None:
        now = self.clock.seconds()
        deadline = now + 2 * H if channel is Channel.EMAIL else None
        task = self.stack.wait(self.stack.intake.submit(channel, queue, deadline=deadline))
        self.created[task.id] = now
        if patience is not None:
            self.later(now + patience, self.hang_up, task.id)

    def letter(self) -> None:
        """An e-mail to the pull queue `letters`, picked by a3 ten minutes later."""
        task = self.stack.wait(self.stack.intake.submit(Channel.EMAIL, "letters"))
        self.created[task.id] = task.created_at
        self.later(task.created_at + 600.0, self.pick, task.id)

    def pick(self, task_id: str) -> None:
        def again(failure):  # a3 is full or away: a minute later
            self.later(self.clock.seconds() + 60.0, self.pick, task_id)

        self.stack.sessions.pick("a3", task_id).addErrback(again)

    def hang_up(self, task_id: str) -> None:
        if task_id not in self.rec.tasks:
            self.check(self.stack.sessions.abandon(task_id, actor="customer"))

    def run_until(self, end: float) -> None:
        """Step from timer to timer, committing after each (offers are announced after their
        commit, and the desks answer them from then)."""
        while True:
            due = [c.getTime() for c in self.clock.getDelayedCalls()]
            nxt = min(due, default=None)
            if nxt is None or nxt > end:
                break
            self.clock.advance(max(0.0, nxt - self.clock.seconds()))
            self.stack.settle()
            assert not self.errors, self.errors
        self.clock.advance(max(0.0, end - self.clock.seconds()))
        self.stack.settle()


def record_day(url: str, seed: int = 3) -> Recording:
    schema.upgrade(url)
    wiring, stack = sql_stack(url, start=at("07:00"))
    try:
        timeouts = {Channel.PHONE: 20.0, Channel.EMAIL: 60.0}
        for queue in (Queue("support", requirement={"support": 1}, wrap_up_seconds=30.0,
                            offer_timeout=timeouts, sl_target={Channel.PHONE: 20.0,
                                                               Channel.EMAIL: 7200.0}),
                      Queue("sales", requirement={"sales": 1}, wrap_up_seconds=30.0,
                            offer_timeout=timeouts)):
            stack.put_queue(queue)
        stack.put_queue(Queue("letters", mode=Mode.PULL))  # a3 picks from its list
        for agent_id, (skills, queues, channels, _, _) in AGENTS.items():
            stack.wait(ensureDeferred(stack.configuration.change_agent(Agent(
                agent_id, skills=skills, queues=set(queues), channels=set(channels)))))
        rng = random.Random(seed)
        desks = Desks(stack, rng)
        for k, (agent_id, (*_, statuses)) in enumerate(AGENTS.items()):
            for hhmm, status, reason in statuses:
                desks.later(at(hhmm, k * SIGN_IN_GAP), desks.presence, agent_id, status,
                            reason)
        arrivals = [(at("08:10", 13.0), Channel.PHONE, "sales", 120.0)]  # nobody: hangs up
        arrivals += [(at("08:05") + rng.uniform(0, 4.5 * H), Channel.PHONE, "support", None)
                     for _ in range(24)]
        arrivals += [(at("09:30") + rng.uniform(0, 300), Channel.PHONE, "support", None)
                     for _ in range(10)]
        arrivals += [(at("09:05") + rng.uniform(0, 3 * H), Channel.PHONE, "sales", None)
                     for _ in range(4)]
        arrivals += [(at("08:00") + rng.uniform(0, 2.5 * H), Channel.EMAIL, "support", None)
                     for _ in range(14)]
        for when, channel, queue, patience in sorted(arrivals):
            desks.later(when, desks.arrive, channel, queue, patience)
        for k in range(3):
            desks.later(at("08:20", k * 600.0), desks.letter)
        desks.run_until(at("15:00"))
        return desks.rec
    finally:
        wiring.close()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "day.db"
    url = f"sqlite:///{path}"
    return url, record_day(url)


def replay_of(url: str, add: int = 0, like: str = "a2"):
    period = read_period(url, START, START + 24 * H)
    day = day_from_events(START, START + 24 * H, period.task_events, period.agent_events,
                          period.attributes)
    agents, copies = list(period.agents), {}
    if add:
        more, copies = with_copies(agents, like, add)
        agents += more
    setup = Setup(period.queues, agents, period.calendars, like=copies)
    events = sorted([*period.task_events, *period.agent_events], key=lambda e: e.at)
    return day, replay(day, setup, events, period.open_before)


def test_the_recorded_day_has_what_the_replay_must_reproduce(recorded):
    url, rec = recorded
    assert len(rec.declined) == 1 and len(rec.missed) == 1 and len(rec.abandoned) == 1
    assert {t["agent"] for t in rec.tasks.values()} == set(AGENTS)
    assert max(t["waited"] for t in rec.tasks.values()) > 60  # the burst made callers wait
    day, _ = replay_of(url)
    assert len(day.arrivals) == 56
    assert {agent for agent, _, _ in day.picks.values()} == {"a3"} and len(day.picks) == 3
    kinds = [a.kind for answers in day.answers.values() for a in answers]
    assert kinds.count("rejected") == 1 and kinds.count("expired") == 1
    assert len(day.patience) == 1 and len(day.work) == 55
    assert sum(1 for w in day.work.values() if w.wrap is not None) == 38  # every call


def test_replay_without_changes_reproduces_the_record(recorded):
    url, rec = recorded
    _, result = replay_of(url)
    replayed = result.replayed
    assert set(replayed.agent_of) == set(rec.tasks)
    for task_id, want in rec.tasks.items():
        r = replayed.records[task_id]
        assert replayed.agent_of[task_id] == want["agent"], task_id
        assert r.answered - r.created == pytest.approx(want["waited"], abs=1e-3), task_id
    assert [t for t, r in replayed.records.items() if r.abandoned] == rec.abandoned
    assert result.same_agent_share() == 1.0
    for row in result.queues():
        for key, value in row["recorded"].items():
            assert row["replayed"][key] == pytest.approx(value, abs=1e-6), (row["queue"], key)
    for row in result.agents():
        assert row["recorded"]["handled"] == row["replayed"]["handled"]
        assert row["replayed"]["occupancy"] == pytest.approx(row["recorded"]["occupancy"],
                                                             abs=1e-9)
    assert result.estimated == 0 and result.not_played == {} and result.open_before == 0


def test_one_more_agent_like_a2_shortens_the_waits(recorded):
    url, _ = recorded
    _, result = replay_of(url, add=1)
    phone = next(r for r in result.queues() if (r["queue"], r["channel"]) == ("support", "phone"))
    assert phone["replayed"]["mean_wait_seconds"] < phone["recorded"]["mean_wait_seconds"]
    # Not always the longest wait: it may fall where a2 (and so the copy) was not in yet.
    assert phone["replayed"]["max_wait_seconds"] <= phone["recorded"]["max_wait_seconds"]
    assert phone["replayed"]["service_level"] > phone["recorded"]["service_level"]
    assert phone["difference"]["mean_wait_seconds"] < 0
    assert phone["replayed"]["offered"] == phone["recorded"]["offered"]
    added = next(a for a in result.agents() if a["agent"] == "a2+1")
    assert added["recorded"] is None and added["replayed"]["handled"] > 0
    assert result.agents_added == ["a2+1"]


def test_the_command_replays_the_day_the_same_under_two_hash_seeds(recorded, tmp_path):
    url, _ = recorded
    db = Path(url.removeprefix("sqlite:///"))
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with ThreadPoolExecutor(max_workers=2) as pool:  # two processes side by side
        runs = list(pool.map(lambda seed: run(
            "replay", "--day", DAY, "--json", cwd=tmp_path,
            env=base_env(SWITCHBOARD_DATABASE_URL=url, PYTHONHASHSEED=seed)), ("0", "1")))
    assert all(r.code == 0 for r in runs), [r.err for r in runs]
    outs = [json.loads(r.out) for r in runs]
    assert outs[0] == outs[1]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # nothing written
    answer = outs[0]
    assert answer["same_agent_share"] == 1.0
    for row in answer["queues"]:
        assert all(v in (0, None) or abs(v) < 1e-6 for v in row["difference"].values()), row


def test_the_command_with_changes_prints_both_sides(recorded, tmp_path):
    url, _ = recorded
    changes = tmp_path / "changes.toml"
    changes.write_text('[[agents]]\nid = "b1"\nskills = {support = 5}\nqueues = ["support"]\n'
                       'channels = ["phone"]\nlike = "a2"\n')
    r = run("replay", "--day", DAY, "--changes", str(changes), "--add-agents", "1",
            "--like", "a4", "--interruptions", "email:email; phone:", cwd=tmp_path,
            env=base_env(SWITCHBOARD_DATABASE_URL=url))
    assert r.code == 0, r.err
    assert "support / phone (target 20 s)" in r.out
    assert "recorded" in r.out and "replayed" in r.out and "difference" in r.out
    assert " b1 " in r.out and " a4+1 " in r.out
    assert "agents added: a4+1, b1" in r.out


BAD = [
    (("--day", "2026-13-01"), "--day"),
    (("--day", DAY, "--from", "0", "--to", "10"), "not both"),
    (("--from", "10", "--to", "5"), "--to must be after --from"),
    (("--add-agents", "2"), "--like"),
    (("--add-agents", "1", "--like", "nobody"), "nobody"),
    (("--interruptions", "voice:"), "--interruptions"),
    (("--changes", "/nonexistent/changes.json"), "--changes"),
]


def test_bad_arguments_are_refused_with_what_is_wrong(recorded):
    url, _ = recorded
    stored = read_period(url, START, START + H)
    parser = build_parser()
    for args, says in BAD:
        parsed = parser.parse_args(["replay", *args])
        with pytest.raises(InvalidValue, match=re.escape(says)):
            period(parsed, START)
            build_setup(parsed, stored, "email:email,phone; phone:")


def test_the_command_exits_2_with_one_line(recorded, tmp_path):
    url, _ = recorded
    runs = run_many([["replay", *args] for args, _ in (BAD[0], BAD[-1])], cwd=tmp_path,
                    env=base_env(SWITCHBOARD_DATABASE_URL=url))
    for (args, says), r in zip((BAD[0], BAD[-1]), runs, strict=True):
        assert r.code == 2, (args, r.out, r.err)
        assert r.err.count("\n") == 1 and r.err.startswith("error: ") and says in r.err, r.err
