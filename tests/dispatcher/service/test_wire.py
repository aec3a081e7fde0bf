"""The bounded JSON reader and the incident log of dispatcher/service/wire.py."""

from __future__ import annotations

import json
import logging

import pytest

from dispatcher.service.wire import (
    BAD_FRAME,
    MAX_DEPTH,
    UNKNOWN_TYPE,
    BadFrame,
    Incidents,
    NotJson,
    depth,
    read_frame,
    read_json,
    request_id,
    string_field,
    too_deep,
)


def nested(n: int, open_: str = "[", close: str = "]") -> str:
    return open_ * n + close * n


def test_a_document_30000_levels_deep_is_refused_before_decoding() -> None:
    for doc in (nested(30_000), '{"a":' * 30_000 + "1" + "}" * 30_000,
                nested(30_000)[:-5]):  # not even closed
        with pytest.raises(NotJson, match="nested deeper than 32"):
            read_json(doc)


def test_up_to_the_limit_is_read() -> None:
    assert read_json(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))
    with pytest.raises(NotJson, match="deeper"):
        read_json(nested(MAX_DEPTH + 1))
    assert read_json(nested(5), max_depth=5)
    with pytest.raises(NotJson):
        read_json(nested(6), max_depth=5)


def test_too_deep_stops_at_the_limit_and_counts_only_nesting() -> None:
    assert not too_deep("[" + "[1, 2]," * 1000 + "[]]", 2)  # wide, not deep
    assert too_deep("[" + "[[]" * 40 + "]" * 40 + "]", 32)  # deep between siblings
    assert not too_deep('["é", [1], {"é": []}]', 3) and too_deep("[é[[", 2)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"type": "reply", "text": "[" * 10_000 + "{" * 10_000})
    assert depth(text) == 1
    assert read_json(text)["text"].startswith("[[[")


def test_escaped_quotes_and_backslashes_keep_strings_closed() -> None:
    # "\\" ends with an escaped backslash, then the string closes; "\"[[[" stays one string
    value = {"a": ["\\", "\"[[[[", "\\\"]]]]", "]]"], "b": [[["x"]]]}
    text = json.dumps(value)
    assert depth(text) == 4
    assert read_json(text) == value
    # a deep document hidden after an escaped quote is still seen
    sneaky = '["\\"", ' + nested(100) + "]"
    assert depth(sneaky) == 101
    with pytest.raises(NotJson, match="deeper"):
        read_json(sneaky)


def test_not_json_is_refused_with_a_reason() -> None:
    for raw, why in ((b"\xff\xfe", "UTF-8"), ("{", "not JSON"), ("NaN", "NaN"),
                     ("[Infinity]", "Infinity"), ("1" * 5000, "not JSON"),
                     ('["\\ud800"]', "lone surrogate"), ('{"\\udfff": 1}', "lone surrogate"),
                     ("[\"\ud800\"]", "lone surrogate")):
        with pytest.raises(NotJson, match=why):
            read_json(raw)


def test_bytes_and_text_and_astral_characters() -> None:
    assert read_json(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    assert read_json('"\u2028"') == "\u2028"
    assert isinstance(NotJson("x"), ValueError)


def test_an_incident_is_logged_once_per_interval_with_its_id(caplog) -> None:
    log = logging.getLogger("test.wire")
    incidents = Incidents(log, interval=60.0)

    def fail() -> BaseException:
        try:
            {}["missing"]
        except KeyError as exc:
            return exc
        raise AssertionError

    with caplog.at_level(logging.ERROR, logger="test.wire"):
        first = incidents.record(fail(), 0.0, "edge: request of %s failed", "a1")
        held = [incidents.record(fail(), float(t), "edge: request of %s failed", "a1")
                for t in range(1, 30)]
        later = incidents.record(fail(), 61.0, "edge: request of %s failed", "a1")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert len({first, later, *held}) == 31 and all(len(i) == 8 for i in held)
    assert f"[incident {first}]" in lines[0] and "KeyError" in lines[0]
    assert "request of a1 failed" in lines[0]
    assert f"[incident {later}]" in lines[1] and "29 more" in lines[1]
    assert held[0] in lines[1] and held[19] in lines[1]  # the first 20 held back


# ---------------------------------------------------------------------- read_frame

TYPES = frozenset({"ping", "hello"})


@pytest.mark.parametrize("rid", ["a-1", "", 7, 0, -3, 10**30, None])
def test_a_frame_id_is_a_string_or_an_integer(rid) -> None:
    msg = read_frame(json.dumps({"type": "ping", "id": rid}), TYPES)
    assert msg["id"] == rid and request_id(msg) == rid


@pytest.mark.parametrize("rid", [True, False, 1.5, 1.0, [1], {"a": 1}])
def test_a_boolean_float_or_structured_id_is_refused(rid) -> None:
    with pytest.raises(BadFrame, match="`id` is a string or an integer") as err:
        read_frame(json.dumps({"type": "ping", "id": rid}), TYPES)
    assert err.value.code == BAD_FRAME and err.value.rid is None


@pytest.mark.parametrize("raw", ["{nope", "[1, 2]", '{"type": 3}', '{"id": 1}', "null",
                                 '{"type": "ping", "x": NaN}', "[" * 40 + "]" * 40,
                                 '{"type": "ping", "x": "\\ud800"}'])
def test_what_is_not_a_frame_is_bad_message(raw) -> None:
    with pytest.raises(BadFrame) as err:
        read_frame(raw, TYPES)
    assert err.value.code == BAD_FRAME


def test_an_unknown_type_keeps_the_id_for_the_answer() -> None:
    with pytest.raises(BadFrame) as err:
        read_frame(json.dumps({"type": "x" * 500, "id": 9}), TYPES)
    assert (err.value.code, err.value.rid) == (UNKNOWN_TYPE, 9)
    assert len(str(err.value)) < 250  # the type is cut in the message


def test_socket_frames_are_text_and_http_bodies_utf8_bytes() -> None:
    raw = json.dumps({"type": "hello", "id": "h"}).encode()
    with pytest.raises(BadFrame, match="frames are JSON text"):
        read_frame(raw, TYPES)
    assert read_frame(raw, TYPES, text_only=False)["id"] == "h"
    with pytest.raises(BadFrame, match="UTF-8"):
        read_frame(b"\xff\xfe", TYPES, text_only=False)


def test_a_string_field_is_bounded_and_may_be_required_nonempty() -> None:
    msg = {"type": "t", "a": "xy", "e": "", "n": 3}
    assert string_field(msg, "a", limit=2) == "xy"
    assert string_field(msg, "e", limit=2) == ""
    assert string_field(msg, "gone", required=False, limit=2, default="d") == "d"
    for name, kw, text in (("a", {"limit": 1}, "at most 1"), ("n", {"limit": 5}, "at most 5"),
                           ("e", {"limit": 5, "nonempty": True}, "1-5"),
                           ("gone", {"limit": 5}, "`gone` is required")):
        with pytest.raises(BadFrame, match=text) as err:
            string_field(msg, name, **kw)
        assert err.value.code == BAD_FRAME
