"""How a service's refusal becomes a problem (api/problems.py `from_error`): by the error's
type, never by the wording of its message."""

from __future__ import annotations

from api.problems import from_error
from dispatcher.domain.errors import (
    InvalidValue,
    UnknownDelivery,
    UnknownQueue,
    UnknownSubscription,
)


def test_unknown_things_are_404_by_type() -> None:
    for exc, code in ((UnknownSubscription("s1"), "unknown_subscription"),
                      (UnknownDelivery("s1", 7), "unknown_delivery"),
                      (UnknownQueue("q"), "unknown_queue")):
        problem = from_error(exc)
        assert (problem.status, problem.code, problem.detail) == (404, code, str(exc))


def test_a_bad_value_is_400_whatever_its_words() -> None:
    problem = from_error(InvalidValue("no such thing as a negative capacity"))
    assert (problem.status, problem.code) == (400, "invalid_value")
