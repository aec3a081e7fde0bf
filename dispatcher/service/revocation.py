"""Revoking console and CTI tokens from outside a running server (`switchboard token revoke`).

Sits in the service layer over `ports.RevocationStore`; the rules (what a revocation keeps and
until when) are `dispatcher.service.tokens`'. A running server on the same database reads a
revocation within `tokens.REVOCATION_POLL_SECONDS` (its `RevocationWatch`). Time comes from the
clock given (an IReactorTime).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from dispatcher.domain.errors import InvalidValue

from . import tokens
from .ports import RevocationStore


class TokenRevocation:
    def __init__(self, store: RevocationStore, clock: Any) -> None:
        self.store = store
        self.clock = clock

    def revoke_token(self, jti: str, actor: str) -> Deferred[None]:
        """Refuse the token whose `jti` claim this is."""
        return tokens.revoke_token(self.store, _given(jti), self.clock.seconds(),
                                   actor, revoked=tokens.RevocationList())

    def revoke_subject(self, subject: str, actor: str) -> Deferred[None]:
        """Refuse every token issued to `subject` until now."""
        return tokens.revoke_subject(self.store, _given(subject),
                                     self.clock.seconds(), actor,
                                     revoked=tokens.RevocationList())


def _given(value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidValue("give a non-empty --jti or --subject")
    return value
