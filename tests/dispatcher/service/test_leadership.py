"""Leadership (`dispatcher.service.leadership`): standby polling, renewals, the local deadline,
the deposed listeners and a clean stop, on a `Clock` with a fake `LeaseStore` whose Deferreds
the test fires by hand (so "in flight" and "late" are exact)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from dispatcher.service.leadership import (
    DEPOSED,
    LEADER,
    MARGIN_SHARE,
    RENEWALS_PER_TTL,
    STANDBY,
    STOPPED,
    Leadership,
)

TTL = 9.0
POLL = 0.5
RENEW_EVERY = TTL / RENEWALS_PER_TTL  # 3 s
DEADLINE = TTL * (1 - MARGIN_SHARE)  # 8.1 s after the last confirmed request was sent
EPS = 1e-3


@dataclass(frozen=True)
class FakeLease:
    epoch: int
    holder: str


@dataclass(frozen=True)
class FakeClaim:
    won: bool
    lease: FakeLease


class FakeLeases:
    """Records each call with its Deferred; the test fires them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], Deferred[Any]]] = []

    def _call(self, kind: str, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((kind, args, d))
        return d

    def claim(self, node: str, ttl: float, grace: float = 0.0) -> Deferred[Any]:
        return self._call("claim", node, ttl)

    def renew(self, node: str, epoch: int, ttl: float) -> Deferred[float | None]:
        return self._call("renew", node, epoch, ttl)

    def release(self, node: str, epoch: int) -> Deferred[bool]:
        return self._call("release", node, epoch)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [args for k, args, _ in self.calls if k == kind]

    def last(self, kind: str) -> Deferred[Any]:
        return [d for k, _, d in self.calls if k == kind][-1]


@dataclass
class Rig:
    clock: Clock
    leases: FakeLeases
    leadership: Leadership
    deposed: list[str]
    led: list[int]

    def lose(self, holder: str, epoch: int) -> None:
        self.leases.last("claim").callback(FakeClaim(False, FakeLease(epoch, holder)))

    def win(self, epoch: int) -> None:
        self.leases.last("claim").callback(FakeClaim(True, FakeLease(epoch, "me")))


@pytest.fixture
def rig() -> Rig:
    clock, leases = Clock(), FakeLeases()
    leadership = Leadership(leases, clock, "me", TTL, poll=POLL)
    deposed: list[str] = []
    leadership.on_deposed(deposed.append)
    led: list[int] = []
    leadership.lead().addCallback(led.append)
    return Rig(clock, leases, leadership, deposed, led)


@pytest.fixture
def leader(rig: Rig) -> Rig:
    """`rig` after its first claim, sent and won at t=0, at epoch 7."""
    rig.win(7)
    return rig


# --- standby ---------------------------------------------------------------------------------


def test_a_standby_polls_until_its_claim_wins_and_lead_fires_with_the_epoch(rig: Rig) -> None:
    assert rig.leases.of("claim") == [("me", TTL)]
    rig.lose("other", 3)
    assert rig.leadership.role == STANDBY and rig.led == []
    rig.clock.advance(POLL - EPS)
    assert len(rig.leases.of("claim")) == 1
    rig.clock.advance(EPS)
    assert len(rig.leases.of("claim")) == 2
    rig.win(4)
    assert rig.led == [4]
    assert (rig.leadership.role, rig.leadership.epoch, rig.leadership.takeovers) == (LEADER, 4, 1)
    rig.clock.advance(POLL * 3)
    assert len(rig.leases.of("claim")) == 2  # a leader claims no more


def test_a_standby_logs_the_holder_once_per_change(rig: Rig, caplog) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher.service.leadership")
    for holder in ("b", "b", "b", "c", "c"):
        rig.lose(holder, 3)
        rig.clock.advance(POLL)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("standby:")]
    assert len(said) == 2 and said[0].startswith("standby: b routes")
    assert said[1].startswith("standby: c routes")


def test_failed_claims_are_retried_and_logged_once_per_outage(rig: Rig, caplog) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher.service.leadership")
    for _ in range(3):
        rig.leases.last("claim").errback(OSError("database unreachable"))
        rig.clock.advance(POLL)
    assert len(rig.leases.of("claim")) == 4 and rig.leadership.role == STANDBY
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "database unreachable" in warned[0].getMessage()
    rig.win(2)
    assert rig.led == [2]
    assert any("answers again" in r.getMessage() for r in caplog.records)


# --- leader ----------------------------------------------------------------------------------


def test_a_leader_renews_every_third_of_the_lease(leader: Rig) -> None:
    leader.clock.advance(RENEW_EVERY - EPS)
    assert leader.leases.of("renew") == []
    leader.clock.advance(EPS)
    assert leader.leases.of("renew") == [("me", 7, TTL)]
    leader.leases.last("renew").callback(100.0)
    leader.clock.advance(RENEW_EVERY - EPS)
    assert len(leader.leases.of("renew")) == 1
    leader.clock.advance(EPS)
    assert len(leader.leases.of("renew")) == 2 and leader.leadership.role == LEADER


def test_a_renewal_finding_the_epoch_moved_on_deposes_once(leader: Rig) -> None:
    leader.clock.advance(RENEW_EVERY)
    leader.leases.last("renew").callback(None)
    assert leader.leadership.role == DEPOSED
    assert len(leader.deposed) == 1 and "claimed" in leader.deposed[0]
    leader.leadership.deposed("group commit: Deposed")  # a second report changes nothing
    leader.clock.advance(TTL * 3)
    assert len(leader.deposed) == 1
    assert len(leader.leases.of("renew")) == 1 and len(leader.leases.of("claim")) == 1


def test_failing_renewals_depose_at_the_deadline_counted_from_the_claim_sent(rig: Rig) -> None:
    rig.clock.advance(0.5)  # the claim (sent at 0) answers late: the deadline counts from 0
    rig.win(7)
    while rig.clock.seconds() + 0.1 < DEADLINE - EPS:
        rig.clock.advance(0.1)
        for kind, _, d in rig.leases.calls:
            if kind == "renew" and not d.called:
                d.errback(OSError("database unreachable"))
    assert len(rig.leases.of("renew")) >= 3  # retried every poll
    rig.clock.advance(DEADLINE - EPS - rig.clock.seconds())
    assert rig.leadership.role == LEADER and rig.deposed == []
    rig.clock.advance(2 * EPS)
    assert rig.leadership.role == DEPOSED and len(rig.deposed) == 1
    assert "not confirmed" in rig.deposed[0]


def test_a_renewal_that_never_answers_deposes_at_the_deadline(leader: Rig) -> None:
    leader.clock.advance(DEADLINE - EPS)
    assert leader.leadership.role == LEADER and len(leader.leases.of("renew")) == 1
    leader.clock.advance(2 * EPS)
    assert leader.leadership.role == DEPOSED and len(leader.deposed) == 1
    leader.leases.last("renew").callback(100.0)  # too late: nothing changes
    assert leader.leadership.role == DEPOSED and len(leader.deposed) == 1


def test_a_confirmed_renewal_pushes_the_deadline_out_from_when_it_was_sent(leader: Rig) -> None:
    leader.clock.advance(RENEW_EVERY)  # sent at 3
    leader.clock.advance(1.0)
    leader.leases.last("renew").callback(100.0)  # confirmed at 4: deadline 3 + 8.1
    leader.clock.advance(RENEW_EVERY)  # the next one, sent at 7, hangs
    assert len(leader.leases.of("renew")) == 2
    leader.clock.advance(RENEW_EVERY + DEADLINE - leader.clock.seconds() - EPS)
    assert leader.leadership.role == LEADER
    leader.clock.advance(2 * EPS)
    assert leader.leadership.role == DEPOSED


# --- stop and status -------------------------------------------------------------------------


def test_stopping_a_leader_releases_its_epoch_and_renews_no_more(leader: Rig) -> None:
    d = leader.leadership.stop()
    assert leader.leases.of("release") == [("me", 7)]
    assert leader.leadership.role == STOPPED
    done: list[Any] = []
    d.addBoth(done.append)
    leader.leases.last("release").callback(True)
    assert done == [True]
    leader.clock.advance(TTL * 2)
    assert leader.leases.of("renew") == [] and leader.deposed == []


def test_stopping_a_standby_releases_nothing_and_claims_no_more(rig: Rig) -> None:
    rig.lose("other", 3)
    done: list[Any] = []
    rig.leadership.stop().addBoth(done.append)
    assert done == [None] and rig.leases.of("release") == []
    rig.clock.advance(POLL * 5)
    assert len(rig.leases.of("claim")) == 1 and rig.leadership.role == STOPPED


def test_a_claim_that_wins_after_the_standby_stopped_is_given_up_at_once(rig: Rig) -> None:
    rig.leadership.stop()
    assert rig.leases.of("release") == []
    rig.win(5)  # the claim in flight when it stopped comes back won
    assert rig.leases.of("release") == [("me", 5)]
    assert rig.leadership.role == STOPPED and rig.led == []


def test_stopping_a_leader_mid_renewal_releases_only_after_the_renewal_answered(
        leader: Rig) -> None:
    leader.clock.advance(RENEW_EVERY)  # a renewal is in flight
    done = leader.leadership.stop()
    assert leader.leases.of("release") == [] and not done.called
    leader.leases.last("renew").callback(100.0)  # it committed: the release follows it
    assert leader.leases.of("release") == [("me", 7)]
    leader.leases.last("release").callback(True)
    assert done.called and leader.leadership.role == STOPPED
    leader.clock.advance(TTL)
    assert len(leader.leases.of("renew")) == 1 and leader.deposed == []


def test_answered_fires_once_the_first_claim_answered_whatever_it_said(rig: Rig) -> None:
    first = rig.leadership.answered()
    assert not first.called
    rig.lose("other", 3)
    assert first.called and rig.leadership.role == STANDBY
    assert rig.leadership.answered().called  # later callers: at once


def test_status_of_a_standby_names_the_leader_seen(rig: Rig) -> None:
    rig.lose("other", 3)
    assert rig.leadership.status() == {
        "role": STANDBY, "node": "me", "epoch": 3, "leader": "other", "lease_seconds": TTL,
        "lease_age_seconds": None}


def test_status_of_a_leader_gives_the_age_of_its_last_confirmation(leader: Rig) -> None:
    leader.clock.advance(RENEW_EVERY)  # a renewal sent at 3
    leader.clock.advance(1.0)
    leader.leases.last("renew").callback(100.0)
    leader.clock.advance(0.5)
    assert leader.leadership.status() == {
        "role": LEADER, "node": "me", "epoch": 7, "leader": "me", "lease_seconds": TTL,
        "lease_age_seconds": 1.5}


def test_a_lease_needs_a_positive_ttl() -> None:
    with pytest.raises(ValueError):
        Leadership(FakeLeases(), Clock(), "me", 0.0)
