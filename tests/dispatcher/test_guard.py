"""dispatcher/guard.py: token buckets per key and throttled log lines."""

from __future__ import annotations

import logging

import pytest

from dispatcher.guard import Budget, Throttled


def test_a_budget_spends_its_burst_then_refills_at_its_rate():
    b = Budget(rate=2, burst=3)
    assert [b.take("ip", 0.0) for _ in range(4)] == [True, True, True, False]
    assert not b.take("ip", 0.4)  # 0.8 token
    assert b.take("ip", 0.6)  # 1.2 token
    assert b.take("other", 0.6)  # keys are independent


def test_a_budget_forgets_keys_that_are_full_again_and_stays_bounded():
    b = Budget(rate=1, burst=2, max_keys=3)
    for i in range(10):
        b.take(i, 0.0)
    assert len(b) == 3
    b.take("late", 5.0)
    assert len(b) == 1


def test_a_budget_refuses_a_rate_of_zero():
    with pytest.raises(ValueError):
        Budget(rate=0, burst=1)


def test_throttled_writes_once_per_interval_and_counts_what_it_suppressed(caplog):
    t = Throttled(logging.getLogger("test.guard"), interval=10)
    with caplog.at_level(logging.WARNING, logger="test.guard"):
        assert t.warning("k", 0.0, "refused %s", "x")
        assert not t.warning("k", 1.0, "refused %s", "x")
        assert not t.warning("k", 2.0, "refused %s", "x")
        assert t.warning("other", 2.0, "refused %s", "y")
        assert t.warning("k", 11.0, "refused %s", "x")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["refused x", "refused y",
                     "refused x (2 more since the last such line)"]


def test_an_outage_is_said_when_it_starts_and_when_it_ends_once_each(caplog) -> None:
    import logging

    from dispatcher.guard import Outage

    caplog.set_level(logging.INFO, logger="outage-test")
    outage = Outage(logging.getLogger("outage-test"))
    outage.worked("back")  # nothing failed: nothing to say
    for n in range(3):
        outage.failed("down %d", n)
    outage.worked("back")
    outage.worked("back")
    outage.failed("down again")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "down 0"), ("INFO", "back"), ("WARNING", "down again")]
