"""Leadership: which node of a deployment routes, as a lease on the database (one router per
database, never two).

Sits in `dispatcher.service` over a `LeaseStore` port (storage/lease.py `SqlLeases` on
PostgreSQL); the composition root builds it, `serve` waits on `lead()` before it loads the
routing state, and group commit checks the epoch in every routing transaction (the fence: a
deposed leader's writes fail whatever this module believes). What it promises:

- `lead()` claims the lease every `poll` seconds until it wins; meanwhile the node is a
  *standby* (`role`), and says once per leader which node holds the lease. A leader whose
  session is gone (storage/lease.py) is replaced once it has not renewed for `grace` (one
  renewal interval and one poll): a killed leader is replaced within about a third of the
  lease, a leader that lost its connection in a database restart is not. Claims that fail
  (the database unreachable) are logged once per outage and retried.
- The leader renews every `ttl / RENEWALS_PER_TTL` seconds. It stops routing (*deposed*, the
  listeners told once) when a renewal finds the epoch moved on, when group commit reports
  `Deposed`, or when the database has not confirmed the lease for `ttl - margin` seconds
  counted from the moment the last confirmed renewal was sent: the database's expiry is never
  earlier than that, so a leader cut off from its database stops before another node can take
  over (a Redis or network outage cannot make two routers).
- `stop()` gives the lease up (it expires at once) so that a standby takes over on its next
  poll instead of waiting out the lease.
- Time is the reactor's (`IReactorTime`): tests drive it with a `Clock`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed

from dispatcher.guard import Outage

log = logging.getLogger(__name__)

RENEWALS_PER_TTL = 3
MARGIN_SHARE = 0.1  # of the ttl: stop this much before the lease may have expired
POLLS_PER_TTL = 10
MAX_POLL_SECONDS = 1.0

STANDBY, LEADER, DEPOSED, STOPPED = "standby", "leader", "deposed", "stopped"


class ClaimResult(Protocol):
    won: bool

    @property
    def lease(self) -> Any: ...  # .epoch, .holder


class LeaseStore(Protocol):
    def claim(self, node: str, ttl: float, grace: float = 0.0) -> Deferred[Any]: ...

    def renew(self, node: str, epoch: int, ttl: float) -> Deferred[float | None]: ...

    def release(self, node: str, epoch: int) -> Deferred[bool]: ...


class Leadership:
    def __init__(self, leases: LeaseStore, reactor: Any, node: str, ttl: float,
                 poll: float | None = None) -> None:
        if ttl <= 0:
            raise ValueError("a lease needs ttl > 0")
        self._leases = leases
        self._reactor = reactor
        self.node = node
        self.ttl = ttl
        self.poll = poll if poll is not None else min(MAX_POLL_SECONDS, ttl / POLLS_PER_TTL)
        # A holder whose session is gone is replaced once it has also missed a renewal.
        self.grace = ttl / RENEWALS_PER_TTL + self.poll
        self.role = STANDBY
        self.epoch: int | None = None
        self.holder: str | None = None  # the node last seen holding the lease
        self.takeovers = 0  # leases won by this process
        self.confirmed_at: float | None = None  # when the last confirmed renewal was sent
        self._listeners: list[Callable[[str], None]] = []
        self._won: Deferred[int] | None = None
        self._timer: Any = None
        self._deadline: Any = None
        self._outage = Outage(log)  # claims or renewals failing: said once
        self._asking: Deferred[Any] | None = None  # the claim or renewal waiting for its answer
        self._answered_once = False  # the first claim has answered (`answered`)
        self._first_answer: list[Deferred[None]] = []

    def on_deposed(self, listener: Callable[[str], None]) -> None:
        """`listener(reason)` is called once when this node stops being the leader."""
        self._listeners.append(listener)

    def lead(self) -> Deferred[int]:
        """Fire with the epoch once this node holds the lease."""
        if self._won is None:
            self._won = Deferred()
            self._claim()
        return self._won

    def answered(self) -> Deferred[None]:
        """Fire once the first claim has answered (won, lost or failed): `role` says which."""
        if self._answered_once:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._first_answer.append(waiter)
        return waiter

    def _answer(self) -> None:
        self._answered_once = True
        waiters, self._first_answer = self._first_answer, []
        for waiter in waiters:
            waiter.callback(None)

    def status(self) -> dict[str, Any]:
        """For /healthz and the metrics: role, epoch, the leader seen, the lease's age."""
        age = None
        if self.role == LEADER and self.confirmed_at is not None:
            age = round(self._reactor.seconds() - self.confirmed_at, 3)
        return {"role": self.role, "node": self.node, "epoch": self.epoch,
                "leader": self.node if self.role == LEADER else self.holder,
                "lease_seconds": self.ttl, "lease_age_seconds": age}

    def deposed(self, reason: str) -> None:
        """Stop routing: the lease is someone else's (or may be). Idempotent."""
        if self.role != LEADER:
            return
        self.role = DEPOSED
        self._cancel()
        log.critical("no longer the router (epoch %s): %s", self.epoch, reason)
        for listener in self._listeners:
            try:
                listener(reason)
            except Exception:
                log.exception("a deposed listener failed")

    def stop(self) -> Deferred[Any]:
        """Stop claiming or renewing; a leader gives the lease up at once, after the renewal
        in flight (if any) has answered, so that no renewal extends a released lease. A claim
        in flight that wins is given up when it answers."""
        was_leader = self.role == LEADER
        self._cancel()
        self.role = STOPPED
        if was_leader and self.epoch is not None:
            return self._release(self.epoch)
        return succeed(None)

    def _release(self, epoch: int) -> Deferred[Any]:
        asking, done = self._asking, Deferred()
        if asking is None:
            done.callback(None)
        else:  # its own callbacks run first: they see STOPPED and do nothing more
            asking.addBoth(lambda result: done.callback(None) or result)
        done.addCallback(lambda _: self._leases.release(self.node, epoch))
        done.addErrback(lambda f: log.warning("could not give the lease up: %s",
                                              f.getErrorMessage()))
        return done

    # -- standby -------------------------------------------------------------------------------

    def _claim(self) -> None:
        self._timer = None
        if self.role != STANDBY:
            return
        sent = self._reactor.seconds()
        self._asking = self._leases.claim(self.node, self.ttl, self.grace)
        self._asking.addCallbacks(self._claimed, self._claim_failed, (sent,))

    def _claimed(self, claim: ClaimResult, sent: float) -> None:
        self._asking = None
        self._recovered()
        if self.role != STANDBY:
            if claim.won and self.role == STOPPED:  # stopped while asking: give it back now
                self._release(claim.lease.epoch)
            return
        lease = claim.lease
        if not claim.won:
            if lease.holder != self.holder:
                log.info("standby: %s routes (epoch %d); this node (%s) takes over when its "
                         "lease ends", lease.holder, lease.epoch, self.node)
            self.holder, self.epoch = lease.holder, lease.epoch
            self._timer = self._reactor.callLater(self.poll, self._claim)
            self._answer()
            return
        previous = self.holder
        self.role, self.epoch, self.holder = LEADER, lease.epoch, self.node
        self.takeovers += 1
        self._confirmed(sent)
        log.info("this node (%s) routes now, epoch %d%s", self.node, lease.epoch,
                 f" (took over from {previous})" if previous and previous != self.node else "")
        self._timer = self._reactor.callLater(self.ttl / RENEWALS_PER_TTL, self._renew)
        self._answer()
        won, self._won = self._won, None
        if won is not None:
            won.callback(lease.epoch)

    def _claim_failed(self, failure: Any) -> None:
        self._asking = None
        self._failed("claim", failure)
        if self.role == STANDBY:
            self._timer = self._reactor.callLater(self.poll, self._claim)
        self._answer()

    # -- leader --------------------------------------------------------------------------------

    def _renew(self) -> None:
        self._timer = None
        if self.role != LEADER or self.epoch is None:
            return
        sent = self._reactor.seconds()
        self._asking = self._leases.renew(self.node, self.epoch, self.ttl)
        self._asking.addCallbacks(self._renewed, self._renew_failed, (sent,))

    def _renewed(self, expiry: float | None, sent: float) -> None:
        self._asking = None
        self._recovered()
        if self.role != LEADER:
            return
        if expiry is None:
            self.deposed("another node claimed the lease")
            return
        self._confirmed(sent)
        self._timer = self._reactor.callLater(self.ttl / RENEWALS_PER_TTL, self._renew)

    def _renew_failed(self, failure: Any) -> None:
        self._asking = None
        self._failed("renewal", failure)
        if self.role == LEADER:  # the deadline deposes us if this lasts
            self._timer = self._reactor.callLater(self.poll, self._renew)

    def _confirmed(self, sent: float) -> None:
        """The database confirmed the lease until at least `sent + ttl` (our clock)."""
        self.confirmed_at = sent
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        left = sent + self.ttl * (1 - MARGIN_SHARE) - self._reactor.seconds()
        self._deadline = self._reactor.callLater(max(0.0, left), self._expired)

    def _expired(self) -> None:
        self._deadline = None
        self.deposed(f"the database has not confirmed the lease for "
                     f"{self.ttl * (1 - MARGIN_SHARE):.1f} s")

    # -- both ----------------------------------------------------------------------------------

    def _failed(self, what: str, failure: Any) -> None:
        message = failure.getErrorMessage()
        self._outage.failed("lease %s failed (retrying every %.1f s): %s", what, self.poll,
                            message.splitlines()[0] if message else failure.type.__name__)

    def _recovered(self) -> None:
        self._outage.worked("the lease's database answers again")

    def _cancel(self) -> None:
        for call in (self._timer, self._deadline):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._deadline = None
