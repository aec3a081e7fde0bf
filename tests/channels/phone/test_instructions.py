"""The CTI's instructions to send again: each call's latest, per integration, in the order
issued, bounded (channels/phone/instructions.py)."""

from __future__ import annotations

import pytest

from channels.phone.instructions import Instructions


def frame(kind: str, call: str) -> dict:
    return {"type": kind, "call_id": call, "task_id": f"t-{call}"}


def test_each_call_keeps_its_latest_in_the_order_issued():
    box = Instructions()
    box.issued("pbx1", "t-a", frame("offer", "a"))
    box.issued("pbx1", "t-b", frame("offer", "b"))
    box.issued("pbx2", "t-c", frame("offer", "c"))
    box.issued("pbx1", "t-a", frame("cancel_route", "a"))  # replaces a's offer, now the latest
    assert [(f["type"], f["call_id"]) for f in box.due("pbx1")] == [
        ("offer", "b"), ("cancel_route", "a")]
    assert [f["call_id"] for f in box.due("pbx2")] == ["c"]
    assert box.due("nobody") == [] and len(box) == 3
    assert box.latest("t-a") == frame("cancel_route", "a")


def test_settled_calls_are_not_sent_again_and_only_by_their_integration():
    box = Instructions()
    box.issued("pbx1", "t-a", frame("route", "a"))
    box.issued("pbx1", "t-b", frame("route", "b"))
    box.settled("t-a", integration="pbx2")  # not pbx2's call: kept
    assert len(box.due("pbx1")) == 2
    box.settled("t-a", integration="pbx1")
    box.settled("t-b")
    box.settled("t-unknown")
    assert box.due("pbx1") == [] and len(box) == 0 and box.latest("t-a") is None


def test_bounded_per_integration_dropping_the_oldest():
    box = Instructions(limit=2)
    assert box.issued("pbx1", "t-a", frame("offer", "a")) is None
    assert box.issued("pbx1", "t-b", frame("offer", "b")) is None
    assert box.issued("pbx2", "t-x", frame("offer", "x")) is None  # another integration's
    assert box.issued("pbx1", "t-b", frame("route", "b")) is None  # a call's update: no growth
    dropped = box.issued("pbx1", "t-c", frame("offer", "c"))
    assert dropped == frame("offer", "a")
    assert [f["call_id"] for f in box.due("pbx1")] == ["b", "c"]
    assert box.latest("t-a") is None and len(box) == 3
    with pytest.raises(ValueError):
        Instructions(limit=0)
