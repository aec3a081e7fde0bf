"""Webhooks: other systems hear about events by signed HTTP POSTs, at least once.

Sits in `dispatcher.service`; depends on the domain and on ports only (`WebhookStore`,
`WebhookPoster`, the clock as IReactorTime). What it promises:

- `Webhooks`: the use cases over subscriptions (the REST API calls them). A URL must be an
  absolute http(s) URL; kinds are event kinds the domain declares (`dispatcher/domain/events.py`),
  a family (`"task.*"`) or `"*"`; a secret is generated with `secrets` when none is given and is
  returned once, never shown again nor logged. Every change is audited as `config.changed` in the
  agent log, in the store's transaction.
- `Deliverer`: started by the composition root after recovery. Every `poll` seconds it turns the
  events committed since each subscription's cursor into deliveries (store's `fan_out`, one
  transaction), then POSTs the due ones: JSON body (its `id` is the event's stable id),
  headers `Switchboard-Event-Id`, `Switchboard-Timestamp` and `Switchboard-Signature:
  v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` (docs/webhooks.md). A 2xx answer is
  delivered; anything else, a timeout or a connection error is retried after `backoff` (with
  jitter) until `max_attempts`, then the delivery is dead (kept, listed, redeliverable).
  Concurrency is bounded in all and per subscription; a slow receiver only holds its own slots,
  never the reactor or routing. Deliveries pending at a stop stay pending and resume at the next
  start. Delivered deliveries are forgotten after `keep_days`; dead ones stay.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError, Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from dispatcher.domain import events as ev
from dispatcher.domain.errors import InvalidValue, UnknownDelivery, UnknownSubscription
from dispatcher.guard import Outage

from .ports import (
    WEBHOOK_STATES,
    WebhookDelivery,
    WebhookDue,
    WebhookPoster,
    WebhookStore,
    WebhookSubscription,
)

log = logging.getLogger(__name__)

ALL = "*"
# Every event kind the domain declares (the `X = "family.name"` constants of events.py).
KNOWN_KINDS = frozenset(v for k, v in vars(ev).items()
                        if k.isupper() and isinstance(v, str) and "." in v)
KNOWN_FAMILIES = frozenset(k.split(".", 1)[0] for k in KNOWN_KINDS)
MAX_KINDS = 100
MAX_URL = 2048
SECRET_MIN, SECRET_MAX = 16, 256
LIST_MAX = 500

# Seconds before attempt 2, 3, ...; the last one repeats. Each is jittered by +-20 %.
BACKOFF = (5.0, 30.0, 120.0, 600.0, 3600.0, 3 * 3600.0, 6 * 3600.0)
JITTER = 0.2

SIGNATURE_VERSION = "v1"
PRUNE_EVERY = 3600.0  # seconds between two clean-ups of old delivered deliveries


# ------------------------------------------------------------------ rules, pure


def matches(kinds: Sequence[str], kind: str) -> bool:
    """Whether an event of `kind` goes to a subscription to `kinds`."""
    return any(k in (ALL, kind) or (k.endswith(".*") and kind.startswith(k[:-1]))
               for k in kinds)


def check_url(url: Any) -> str:
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise InvalidValue(f"url: an absolute http(s) URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidValue(f"url: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValue("url: must be an absolute http:// or https:// URL with a host")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidValue("url: must not contain spaces or control characters")
    if parts.username is not None or parts.password is not None:
        raise InvalidValue("url: no user name or password in the URL (the signature "
                           "authenticates each delivery; docs/webhooks.md)")
    return url


def check_kinds(kinds: Any) -> tuple[str, ...]:
    if isinstance(kinds, str) or not isinstance(kinds, (list, tuple)) or not kinds:
        raise InvalidValue('kinds: a non-empty list of event kinds, "family.*" or "*"')
    if len(kinds) > MAX_KINDS:
        raise InvalidValue(f"kinds: at most {MAX_KINDS}")
    unknown = [k for k in kinds if not isinstance(k, str) or not (
        k == ALL or k in KNOWN_KINDS or (k.endswith(".*") and k[:-2] in KNOWN_FAMILIES))]
    if unknown:
        raise InvalidValue(f"kinds: unknown {', '.join(map(repr, unknown))} (known: "
                           f"{', '.join(sorted(KNOWN_KINDS))}, a family as \"task.*\", or "
                           f"\"*\")")
    return tuple(dict.fromkeys(kinds))


def check_secret(secret: Any) -> str:
    if (not isinstance(secret, str) or not SECRET_MIN <= len(secret) <= SECRET_MAX
            or not secret.isascii() or not secret.isprintable() or " " in secret):
        raise InvalidValue(f"secret: {SECRET_MIN}-{SECRET_MAX} printable ASCII characters, no "
                           f"spaces")
    return secret


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (compact JSON, UTF-8)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def headers_for(due: WebhookDue, body: bytes, now: float) -> dict[str, str]:
    timestamp = str(int(now))
    return {"Content-Type": "application/json", "User-Agent": "Switchboard-Webhooks/1",
            "Switchboard-Event-Id": due.event_id, "Switchboard-Timestamp": timestamp,
            "Switchboard-Signature": signature(due.secret, timestamp, body)}


def backoff(failed_attempts: int, rng: random.Random) -> float:
    """Seconds before the next attempt after `failed_attempts` (>= 1) failures."""
    base = BACKOFF[min(failed_attempts, len(BACKOFF)) - 1]
    return base * rng.uniform(1 - JITTER, 1 + JITTER)


# ------------------------------------------------------------------ use cases


class Webhooks:
    """Subscriptions, their deliveries and redelivery. `actor`: who asks (e.g.
    `supervisor:<id>`), the audit's actor."""

    def __init__(self, store: WebhookStore, clock: IReactorTime,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
                 new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> None:
        self.store = store
        self.clock = clock
        self._new_id = new_id
        self._new_secret = new_secret

    def _audit(self, actor: str, action: str, subscription_id: str,
               **details: Any) -> ev.Event:
        return ev.Event(ev.CONFIG_CHANGED, self.clock.seconds(), None, actor, actor,
                        {"what": "webhook", "action": action, "subscription": subscription_id,
                         **details})

    async def subscribe(self, url: str, kinds: Sequence[str], actor: str,
                        secret: str | None = None) -> tuple[WebhookSubscription, str]:
        """A new subscription and its secret (returned this once)."""
        url = check_url(url)
        kinds = check_kinds(kinds)
        secret = self._new_secret() if secret is None else check_secret(secret)
        sub = WebhookSubscription(self._new_id(), url, kinds, self.clock.seconds(), actor)
        await self.store.add_subscription(sub, secret, [self._audit(
            actor, "added", sub.id, url=url, kinds=list(kinds))])
        return sub, secret

    async def subscriptions(self) -> list[WebhookSubscription]:
        return await self.store.subscriptions()

    async def subscription(self, subscription_id: str) -> WebhookSubscription:
        found = await self.store.subscription(subscription_id)
        if found is None:
            raise UnknownSubscription(subscription_id)
        return found

    async def unsubscribe(self, subscription_id: str, actor: str) -> None:
        """Remove it and its deliveries (pending ones are not sent)."""
        if not await self.store.remove_subscription(subscription_id, [self._audit(
                actor, "removed", subscription_id)]):
            raise UnknownSubscription(subscription_id)

    async def deliveries(self, subscription_id: str, state: str | None = None, limit: int = 50,
                         before: int | None = None) -> list[WebhookDelivery]:
        """Newest first; page with `before` = the last id seen."""
        if state is not None and state not in WEBHOOK_STATES:
            raise InvalidValue(f"state: one of {', '.join(WEBHOOK_STATES)}")
        if not isinstance(limit, int) or not 1 <= limit <= LIST_MAX:
            raise InvalidValue(f"limit: 1-{LIST_MAX}")
        if before is not None and (not isinstance(before, int) or before < 1):
            raise InvalidValue("before: a delivery id")
        await self.subscription(subscription_id)
        return await self.store.deliveries(subscription_id, state, limit, before)

    async def redeliver(self, subscription_id: str, delivery_id: int, actor: str) -> None:
        """Send a delivery again (a dead one, or a delivered one the receiver lost), from its
        first attempt."""
        await self.subscription(subscription_id)
        if not await self.store.redeliver(subscription_id, delivery_id, self.clock.seconds(),
                                          [self._audit(actor, "redelivered", subscription_id,
                                                       delivery=delivery_id)]):
            raise UnknownDelivery(subscription_id, delivery_id)


# ------------------------------------------------------------------ delivery


class Deliverer:
    """The loop that fans events out to deliveries and POSTs them (see the module's text)."""

    def __init__(self, store: WebhookStore, clock: IReactorTime, poster: WebhookPoster, *,
                 poll: float = 1.0, max_attempts: int = 8, timeout: float = 10.0,
                 max_in_flight: int = 16, per_subscription: int = 2, settle: float = 5.0,
                 batch: int = 500, keep_days: float = 7.0, rng: random.Random | None = None,
                 on_result: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.poster = poster
        self.poll = poll
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.per_subscription = per_subscription
        self.settle = settle
        self.batch = batch
        self.keep_seconds = keep_days * 86400
        self._pruned_at: float | None = None
        self.rng = rng or random.Random()
        self.on_result = on_result or (lambda outcome: None)  # delivered | retry | dead
        self._loop: LoopingCall | None = None
        self._sending: dict[int, tuple[str, Deferred[Any]]] = {}  # delivery id -> (sub, post)
        self._done: dict[int, Deferred[None]] = {}
        self._stopping = False
        self._outage = Outage(log, logging.ERROR)  # rounds failing: said once

    def start(self) -> None:
        self._stopping = False
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.clock
        self._loop.start(self.poll, now=True)

    def stop(self) -> Deferred[None]:
        """Stop polling; posts in flight are abandoned (their deliveries stay pending)."""
        self._stopping = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for _, post in list(self._sending.values()):
            post.cancel()
        waiting = list(self._done.values())
        return DeferredList(waiting, consumeErrors=True).addCallback(lambda _: None)

    def tick(self) -> Deferred[None]:
        """One round; never fails (a failure is logged, once until a round works again, and the
        next round tries again)."""
        d = ensureDeferred(self._tick())
        d.addCallbacks(self._round_worked, self._round_failed)
        return d

    def _round_worked(self, _: Any) -> None:
        self._outage.worked("webhook rounds work again")

    def _round_failed(self, failure: Any) -> None:
        self._outage.failed("webhook round failed (retrying every %.1f s, said once): %s",
                            self.poll, failure.getErrorMessage())

    async def _tick(self) -> None:
        now = self.clock.seconds()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            await self.store.prune(now - self.keep_seconds)
        await self.store.fan_out(now, self.settle, self.batch, matches)
        free = self.max_in_flight - len(self._sending)
        if free <= 0 or self._stopping:
            return
        due = await self.store.due(now, self.per_subscription, list(self._sending))
        busy = Counter(sub for sub, _ in self._sending.values())
        for item in due:
            if self._stopping or len(self._sending) >= self.max_in_flight:
                break
            if item.id in self._sending or busy[item.subscription_id] >= self.per_subscription:
                continue
            busy[item.subscription_id] += 1
            self._send(item)

    def _send(self, due: WebhookDue) -> None:
        body = body_of(due.payload)
        post = self.poster.post(due.url, headers_for(due, body, self.clock.seconds()), body,
                                self.timeout)
        self._sending[due.id] = (due.subscription_id, post)
        done = ensureDeferred(self._settle(due, post))
        done.addErrback(lambda f: log.error("webhook delivery %d not recorded: %s", due.id,
                                            f.getErrorMessage()))
        done.addBoth(lambda _: self._forget(due.id))
        if not done.called:
            self._done[due.id] = done

    def _forget(self, delivery_id: int) -> None:
        self._sending.pop(delivery_id, None)
        self._done.pop(delivery_id, None)

    async def _settle(self, due: WebhookDue, post: Deferred[int]) -> None:
        status: int | None = None
        try:
            status = await post
            error = f"HTTP {status}"
        except CancelledError:
            if self._stopping:
                return  # stays pending: sent again after the restart
            error = f"no answer within {self.timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure to deliver is retried
            error = describe(exc)
        now = self.clock.seconds()
        if status is not None and 200 <= status < 300:
            await self.store.delivered(due.id, now, status)
            self.on_result("delivered")
            return
        attempts = due.attempts + 1
        if attempts >= self.max_attempts:
            log.warning("webhook delivery %d (%s) dead after %d attempts: %s", due.id,
                        due.event_id, attempts, error)
            await self.store.failed(due.id, now, status, error, None)
            self.on_result("dead")
        else:
            await self.store.failed(due.id, now, status, error,
                                    now + backoff(attempts, self.rng))
            self.on_result("retry")


def describe(exc: BaseException) -> str:
    """A failure in a few words (never a URL with its credentials: Twisted's errors name the
    host at most)."""
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]
