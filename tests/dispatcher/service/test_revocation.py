"""`TokenRevocation` (dispatcher/service/revocation.py): stores a revocation by `jti` or by
subject at the clock's time, as the operator; an empty value is refused before anything is
stored."""

from __future__ import annotations

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from dispatcher.domain.errors import InvalidValue
from dispatcher.service import tokens
from dispatcher.service.revocation import TokenRevocation


class Kept:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def revoke_token(self, jti, expires_at, now, actor):
        self.calls.append(("token", jti, expires_at, now, actor))
        return succeed(None)

    def revoke_subject(self, subject, not_before, now, actor):
        self.calls.append(("subject", subject, not_before, now, actor))
        return succeed(None)


def test_by_jti_and_by_subject_at_the_clocks_time():
    clock, kept = Clock(), Kept()
    clock.advance(1000.0)
    revocation = TokenRevocation(kept, clock)
    revocation.revoke_token(" j1 ", "operator")
    revocation.revoke_subject("ann", "operator")
    assert kept.calls == [
        ("token", "j1", 1000.0 + tokens.MAX_INTEGRATION_LIFETIME_SECONDS, 1000.0, "operator"),
        ("subject", "ann", 1000.0, 1000.0, "operator"),
    ]


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_value_is_refused_and_nothing_is_stored(value):
    kept = Kept()
    revocation = TokenRevocation(kept, Clock())
    with pytest.raises(InvalidValue, match="non-empty --jti or --subject"):
        revocation.revoke_token(value, "operator")
    with pytest.raises(InvalidValue):
        revocation.revoke_subject(value, "operator")
    assert kept.calls == []
