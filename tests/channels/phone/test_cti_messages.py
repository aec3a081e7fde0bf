"""channels.phone.messages: whatever a PBX sends, parsing gives a message or a BadMessage with
a code — never another exception (the CTI answers it and keeps the connection)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.phone import messages as m

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@given(st.one_of(st.text(), st.binary()))
def test_any_frame_parses_or_is_a_bad_message(raw):
    try:
        msg = m.parse(raw)
    except m.BadMessage as exc:
        assert exc.code in (m.BAD_MESSAGE, m.UNKNOWN_TYPE)
    else:
        assert msg["type"] in m.CLIENT_TYPES


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(m.CLIENT_TYPES)), st.dictionaries(
    st.sampled_from(["id", "call_id", "from", "to", "queue", "attributes", "priority",
                     "extension", "state", "by", "reason"]), JSON, max_size=8))
def test_fields_of_any_shape_are_checked(kind, fields):
    raw = json.dumps({**fields, "type": kind})
    try:
        msg = m.parse(raw)
        m.text(msg, "call_id", False, m.MAX_CALL_ID_CHARS)
        m.text(msg, "from", False, m.MAX_NUMBER_CHARS)
        m.attributes(msg)
        m.integer(msg, "priority")
        m.choice(msg, "state", m.DEVICE_STATES, m.IDLE)
    except m.BadMessage:
        pass


@pytest.mark.parametrize("attributes", [
    {"a": [1]}, {"": 1}, {"x" * 65: 1}, {"a": "x" * 1001}, {f"k{i}": i for i in range(33)},
    {"a": float("inf")}, [1, 2],
])
def test_attributes_are_flat_and_bounded(attributes):
    with pytest.raises(m.BadMessage):
        m.attributes({"type": m.CALL_ARRIVED, "attributes": attributes})


def test_well_formed_attributes_pass():
    attrs = {"ivr": "billing", "vip": True, "score": 0.5, "n": 3, "none": None}
    assert m.attributes({"type": m.CALL_ARRIVED, "attributes": attrs}) == attrs
