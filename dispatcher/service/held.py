"""Held mail: what the SMTP edge of a node that does not route (a standby, an edge node) accepted,
kept in the database until the router takes it in.

Sits in `dispatcher.service` over the `HeldStore` port (storage/held.py). The e-mail edge uses
it on both sides (channels/email/held.py): a node that does not route `hold`s each message it
accepts (raw bytes, envelope, the sender checks' verdict) and answers 250 only after that
commit; the router takes `waiting` messages in through the same reading and `Mail.receive` as
its own SMTP, then marks each `taken` (the row goes). What it promises:

- nothing acknowledged is lost: a held message stays until the router stored it as mail; a
  message the router could not take in yet (`retry_later`) is tried again after
  RETRY_SECONDS[attempt], the last interval repeating, and its error logged once per attempt;
- nothing is stored twice: the router stores each with the source key `source_of(id)`, which
  the store refuses twice, and looks the key up before taking a message in (a router that died
  between storing and `taken` finds it stored);
- oldest first, `limit` at a time; time from the reactor.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from .ports import HeldMail, HeldStore

RETRY_SECONDS = (5.0, 30.0, 120.0, 600.0)
SOURCE_PREFIX = "held:"


def source_of(id: str) -> str:
    """The source key of a held message once stored as mail (`MailMessage.source`)."""
    return f"{SOURCE_PREFIX}{id}"


class Held:
    def __init__(self, store: HeldStore, clock: IReactorTime, node: str = "") -> None:
        self._store = store
        self._clock = clock
        self.node = node

    def hold(self, raw: bytes, queue: str, envelope_from: str, recipients: Sequence[str],
             verdict: Mapping[str, Any] | None) -> Deferred[HeldMail]:
        """Commit one accepted message; fires once committed (the edge may then answer 250)."""
        now = self._clock.seconds()
        mail = HeldMail(uuid.uuid4().hex, now, self.node, queue, envelope_from,
                        tuple(recipients), raw, dict(verdict) if verdict is not None else None,
                        0, now)
        return self._store.hold(mail).addCallback(lambda _: mail)

    def waiting(self, limit: int) -> Deferred[list[HeldMail]]:
        """The oldest messages due to be taken in now."""
        return self._store.waiting(self._clock.seconds(), limit)

    def taken(self, ids: Sequence[str]) -> Deferred[None]:
        """These messages are stored as mail: forget them."""
        return self._store.taken(list(ids))

    def retry_later(self, mail: HeldMail, error: str) -> Deferred[None]:
        """Taking `mail` in failed: try it again later (module doc)."""
        delay = RETRY_SECONDS[min(mail.attempts, len(RETRY_SECONDS) - 1)]
        return self._store.retry_later(mail.id, mail.attempts + 1,
                                       self._clock.seconds() + delay, error[:500])

    def backlog(self) -> Deferred[tuple[int, float]]:
        """How many messages are held now and the age in seconds of the oldest (0 when none):
        the lag between the nodes' SMTP and the router (for /metrics)."""
        now = self._clock.seconds()
        return self._store.oldest().addCallback(
            lambda found: (found[0], 0.0 if found[1] is None else max(0.0, now - found[1])))
