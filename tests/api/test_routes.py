"""Route matching: literal segments, parameters (percent-decoded), several methods per path."""

from __future__ import annotations

from api.catalogue import routes
from api.routes import find, split


def test_split_keeps_only_paths_below_the_prefix() -> None:
    assert split("/api/v1/tasks?limit=2") == ("tasks",)
    assert split("/api/v1/tasks/") == ("tasks",)
    assert split("/api/v2/tasks") is None
    assert split("/report") is None


def test_a_path_parameter_is_decoded_and_methods_are_all_found() -> None:
    found, params = find(routes(), ("tasks", "a%2Fb"))
    assert {r.method for r in found} == {"GET"}
    assert params == {"id": "a/b"}
    found, _ = find(routes(), ("tasks",))
    assert {r.method for r in found} == {"GET", "POST"}


def test_longer_paths_match_their_own_route() -> None:
    found, params = find(routes(), ("tasks", "t1", "cancel"))
    assert [r.path for r in found] == ["/tasks/{id}/cancel"]
    assert params == {"id": "t1"}
    assert find(routes(), ("tasks", "t1", "nothing")) == ([], {})
