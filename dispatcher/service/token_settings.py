"""A token verifier from an edge's token settings, for a verifier built outside that edge (the
runtime verifies people's tokens for the admin edge's `/report` with the console's keys,
reading its settings by attribute: the runtime imports no edge).
"""

from __future__ import annotations

from typing import Any

from . import tokens


def verifier_from(settings: Any, stored: bytes | None = None,
                  label: str = "report") -> tokens.Verifier:
    """A token verifier from an edge's token settings (read by attribute: `jwt_algorithm`,
    `jwt_secret_file`, `jwt_public_key_file`, `jwt_private_key_file`, `issuer`, `audience`,
    `leeway_seconds`, and the lifetimes if it has them); `stored`: the HS256 secret kept in the
    database, used when no secret file is set. Raises tokens.KeyProblem when its keys cannot be
    used."""
    keys = tokens.load_keys(
        settings.jwt_algorithm, secret_file=settings.jwt_secret_file,
        public_key_file=settings.jwt_public_key_file,
        private_key_file=settings.jwt_private_key_file, stored=stored, label=label)
    return tokens.Verifier(
        keys, settings.issuer, settings.audience, settings.leeway_seconds,
        max_lifetime=getattr(settings, "max_token_lifetime_seconds",
                             tokens.MAX_LIFETIME_SECONDS),
        max_integration_lifetime=getattr(settings, "max_integration_token_lifetime_seconds",
                                         tokens.MAX_INTEGRATION_LIFETIME_SECONDS))
