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


# The console and the CTI read frames with one parser (dispatcher.service.wire.read_frame):
# they agree on every frame whose type both know (`ping`) or neither knows.
SHARED_TYPES = st.sampled_from(["ping", "launch.rockets", ""]) | st.text(max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.text(), st.binary(),
    st.builds(lambda kind, rid, rest: json.dumps({**rest, "type": kind, "id": rid}),
              SHARED_TYPES, JSON, st.dictionaries(st.text(max_size=4), JSON, max_size=2))))
def test_console_and_cti_agree_on_every_frame(raw):
    from agent_console import messages as console

    def outcome(parse, bad):
        try:
            msg = parse(raw)
        except bad as exc:
            return ("error", exc.code, exc.rid, str(exc))
        return ("ok", msg.get("id"))

    try:
        kind = json.loads(raw).get("type")
    except (ValueError, AttributeError, RecursionError):
        kind = None
    if isinstance(kind, str) and kind in console.CLIENT_TYPES ^ m.CLIENT_TYPES:
        return  # a type one protocol knows and the other does not
    assert outcome(console.parse, console.BadMessage) == outcome(m.parse, m.BadMessage)


@pytest.mark.parametrize("rid", [True, False, 1.5, [1], {"n": 1}])
def test_a_boolean_or_float_id_is_refused_by_both(rid):
    from agent_console import messages as console

    raw = json.dumps({"type": "ping", "id": rid})
    for parse, bad in ((m.parse, m.BadMessage), (console.parse, console.BadMessage)):
        with pytest.raises(bad, match="`id` is a string or an integer") as err:
            parse(raw)
        assert err.value.code == "bad_message"


def test_both_keep_their_error_codes():
    from agent_console import messages as console

    for proto in (m, console):
        assert (proto.BAD_MESSAGE, proto.UNKNOWN_TYPE) == ("bad_message", "unknown_type")
        assert proto.BadMessage("x").code == "bad_message"


def test_binary_frames_are_refused_by_both_and_http_bodies_read():
    from agent_console import messages as console

    raw = json.dumps({"type": "ping", "id": 3}).encode()
    for parse, bad in ((m.parse, m.BadMessage), (console.parse, console.BadMessage)):
        with pytest.raises(bad, match="frames are JSON text"):
            parse(raw)
    assert m.parse(raw, text_only=False)["id"] == 3  # POST /cti/events
