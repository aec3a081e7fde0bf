"""Webhook subscriptions and deliveries: the `WebhookStore` port (dispatcher/service/ports.py)
on SQL (`SqlWebhooks`) and in memory (`MemoryWebhooks`, for the service's unit tests; the same
contract tests run on both).

Sits under `dispatcher.storage`. The committed event logs (`task_events`, `agent_events`) are the
source: `fan_out` reads each subscription's events after its cursors and records the matching
deliveries in the transaction that advances the cursors, so an event becomes a delivery exactly
once, after its own commit, and nothing is lost across restarts. A delivery keeps the JSON
object it will POST (`event_payload`); its id, "task-<log id>" or "agent-<log id>", is stable.
Each call is one transaction on the pool's thread; `thd_*` functions return plain values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred, succeed

from dispatcher.domain.events import Event
from dispatcher.service.ports import (
    WEBHOOK_DEAD,
    WEBHOOK_DELIVERED,
    WEBHOOK_PENDING,
    WebhookDelivery,
    WebhookDue,
    WebhookSubscription,
)

from . import tables as t
from .cursor import readable
from .pool import Pool
from .rows import event_row, snapshot

Matches = Callable[[Sequence[str], str], bool]
LOGS = (("task", "task_cursor"), ("agent", "agent_cursor"))
ERROR_CHARS = 500  # of a failure's description kept in `last_error`


def event_payload(log: str, log_id: int, kind: str, at: float, task_id: str | None,
                  agent_id: str | None, actor: str, data: Any) -> dict[str, Any]:
    """The JSON object a receiver gets for one event (docs/webhooks.md)."""
    return {"id": f"{log}-{log_id}", "kind": kind, "at": at, "task": task_id,
            "agent": agent_id, "actor": actor, "data": data}


_SUB = t.webhook_subscriptions
_DEL = t.webhook_deliveries
_SUB_FIELDS = (_SUB.c.id, _SUB.c.url, _SUB.c.kinds, _SUB.c.created_at, _SUB.c.created_by,
               _SUB.c.disabled)
_DEL_FIELDS = tuple(_DEL.c[f.name] for f in dataclasses.fields(WebhookDelivery))


def _subscription(row: Any) -> WebhookSubscription:
    return WebhookSubscription(row.id, row.url, tuple(row.kinds), float(row.created_at),
                               row.created_by, bool(row.disabled))


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(*row)


def _log_table(log: str) -> sa.Table:
    return t.task_events if log == "task" else t.agent_events


def _insert_ignore(conn: sa.Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing()


def thd_add_subscription(conn: sa.Connection, row: dict[str, Any],
                         events: list[dict[str, Any]]) -> None:
    if events:  # first: a subscription does not hear of its own making
        conn.execute(t.agent_events.insert(), events)
    ends = {cursor: conn.execute(sa.select(sa.func.coalesce(sa.func.max(_log_table(log).c.id),
                                                            0))).scalar_one()
            for log, cursor in LOGS}
    conn.execute(_SUB.insert().values(**row, **ends))


def thd_subscriptions(conn: sa.Connection) -> list[WebhookSubscription]:
    rows = conn.execute(sa.select(*_SUB_FIELDS).order_by(_SUB.c.created_at, _SUB.c.id)).all()
    return [_subscription(r) for r in rows]


def thd_subscription(conn: sa.Connection, subscription_id: str) -> WebhookSubscription | None:
    row = conn.execute(sa.select(*_SUB_FIELDS).where(_SUB.c.id == subscription_id)).first()
    return _subscription(row) if row is not None else None


def thd_remove_subscription(conn: sa.Connection, subscription_id: str,
                            events: list[dict[str, Any]]) -> bool:
    if conn.execute(_SUB.delete().where(_SUB.c.id == subscription_id)).rowcount == 0:
        return False
    conn.execute(_DEL.delete().where(_DEL.c.subscription_id == subscription_id))
    if events:
        conn.execute(t.agent_events.insert(), events)
    return True


def thd_deliveries(conn: sa.Connection, subscription_id: str, state: str | None, limit: int,
                   before: int | None) -> list[WebhookDelivery]:
    query = sa.select(*_DEL_FIELDS).where(_DEL.c.subscription_id == subscription_id)
    if state is not None:
        query = query.where(_DEL.c.state == state)
    if before is not None:
        query = query.where(_DEL.c.id < before)
    rows = conn.execute(query.order_by(_DEL.c.id.desc()).limit(limit)).all()
    return [_delivery(r) for r in rows]


def thd_redeliver(conn: sa.Connection, subscription_id: str, delivery_id: int, now: float,
                  events: list[dict[str, Any]]) -> bool:
    result = conn.execute(_DEL.update().where(
        _DEL.c.id == delivery_id, _DEL.c.subscription_id == subscription_id).values(
        state=WEBHOOK_PENDING, attempts=0, next_attempt_at=now))
    if result.rowcount == 0:
        return False
    if events:
        conn.execute(t.agent_events.insert(), events)
    return True


def thd_fan_out(conn: sa.Connection, now: float, settle: float, limit: int,
                matches: Matches) -> int:
    made = 0
    subs = conn.execute(sa.select(_SUB.c.id, _SUB.c.kinds, _SUB.c.task_cursor,
                                  _SUB.c.agent_cursor).where(_SUB.c.disabled.is_(False))).all()
    for sub in subs:
        moved: dict[str, int] = {}
        for log, cursor_name in LOGS:
            cursor = int(getattr(sub, cursor_name))
            log_table = _log_table(log)
            rows = conn.execute(sa.select(log_table).where(log_table.c.id > cursor)
                                .order_by(log_table.c.id).limit(limit)).all()
            taken, new = readable(rows, cursor, now, settle)  # the gap rule (cursor.py)
            if new == cursor:
                continue
            moved[cursor_name] = new
            wanted = [
                {"subscription_id": sub.id, "event_id": f"{log}-{r.id}", "kind": r.kind,
                 "payload": event_payload(log, r.id, r.kind, r.at, r.task_id, r.agent_id,
                                          r.actor, r.data),
                 "state": WEBHOOK_PENDING, "attempts": 0, "created_at": now,
                 "next_attempt_at": now}
                for r in taken if matches(sub.kinds, r.kind)]
            if wanted:
                conn.execute(_insert_ignore(conn, _DEL), wanted)
                made += len(wanted)
        if moved:
            conn.execute(_SUB.update().where(_SUB.c.id == sub.id).values(**moved))
    return made


def thd_due(conn: sa.Connection, now: float, each: int,
            exclude: Sequence[int]) -> list[WebhookDue]:
    subs = conn.execute(sa.select(_SUB.c.id, _SUB.c.url, _SUB.c.secret)
                        .where(_SUB.c.disabled.is_(False)).order_by(_SUB.c.id)).all()
    found = []
    for sub in subs:  # each subscription its share: a slow receiver's backlog starves none
        query = (sa.select(_DEL.c.id, _DEL.c.event_id, _DEL.c.payload, _DEL.c.attempts)
                 .where(_DEL.c.subscription_id == sub.id, _DEL.c.state == WEBHOOK_PENDING,
                        _DEL.c.next_attempt_at <= now))
        if exclude:
            query = query.where(_DEL.c.id.not_in(list(exclude)))
        rows = conn.execute(query.order_by(_DEL.c.next_attempt_at, _DEL.c.id).limit(each))
        found += [WebhookDue(r.id, sub.id, sub.url, sub.secret, r.event_id, dict(r.payload),
                             r.attempts) for r in rows]
    return found


def thd_delivered(conn: sa.Connection, delivery_id: int, now: float, status: int) -> None:
    conn.execute(_DEL.update().where(_DEL.c.id == delivery_id).values(
        state=WEBHOOK_DELIVERED, attempts=_DEL.c.attempts + 1, last_status=status,
        last_error=None, delivered_at=now, next_attempt_at=None))


def thd_failed(conn: sa.Connection, delivery_id: int, now: float, status: int | None,
               error: str, next_attempt_at: float | None) -> None:
    conn.execute(_DEL.update().where(_DEL.c.id == delivery_id).values(
        state=WEBHOOK_PENDING if next_attempt_at is not None else WEBHOOK_DEAD,
        attempts=_DEL.c.attempts + 1, last_status=status, last_error=error[:ERROR_CHARS],
        next_attempt_at=next_attempt_at))


def thd_prune(conn: sa.Connection, delivered_before: float) -> int:
    return conn.execute(_DEL.delete().where(_DEL.c.state == WEBHOOK_DELIVERED,
                                            _DEL.c.delivered_at < delivered_before)).rowcount


def thd_dead_count(conn: sa.Connection) -> int:
    query = sa.select(sa.func.count()).select_from(_DEL).where(_DEL.c.state == WEBHOOK_DEAD)
    return int(conn.execute(query).scalar_one())


def _subscription_row(subscription: WebhookSubscription, secret: str) -> dict[str, Any]:
    return {"id": subscription.id, "url": subscription.url, "kinds": list(subscription.kinds),
            "secret": secret, "created_at": subscription.created_at,
            "created_by": subscription.created_by, "disabled": subscription.disabled}


class SqlWebhooks:
    """`WebhookStore` on SQL."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def add_subscription(self, subscription: WebhookSubscription, secret: str,
                         events: Sequence[Event] = ()) -> Deferred[None]:
        return self._pool.run(thd_add_subscription, _subscription_row(subscription, secret),
                              [event_row(e) for e in events])

    def subscriptions(self) -> Deferred[list[WebhookSubscription]]:
        return self._pool.run(thd_subscriptions)

    def subscription(self, subscription_id: str) -> Deferred[WebhookSubscription | None]:
        return self._pool.run(thd_subscription, subscription_id)

    def remove_subscription(self, subscription_id: str,
                            events: Sequence[Event] = ()) -> Deferred[bool]:
        return self._pool.run(thd_remove_subscription, subscription_id,
                              [event_row(e) for e in events])

    def deliveries(self, subscription_id: str, state: str | None, limit: int,
                   before: int | None) -> Deferred[list[WebhookDelivery]]:
        return self._pool.run(thd_deliveries, subscription_id, state, limit, before)

    def redeliver(self, subscription_id: str, delivery_id: int, now: float,
                  events: Sequence[Event] = ()) -> Deferred[bool]:
        return self._pool.run(thd_redeliver, subscription_id, delivery_id, now,
                              [event_row(e) for e in events])

    def fan_out(self, now: float, settle: float, limit: int, matches: Matches) -> Deferred[int]:
        return self._pool.run(thd_fan_out, now, settle, limit, matches)

    def due(self, now: float, each: int,
            exclude: Sequence[int] = ()) -> Deferred[list[WebhookDue]]:
        return self._pool.run(thd_due, now, each, list(exclude))

    def delivered(self, delivery_id: int, now: float, status: int) -> Deferred[None]:
        return self._pool.run(thd_delivered, delivery_id, now, status)

    def failed(self, delivery_id: int, now: float, status: int | None, error: str,
               next_attempt_at: float | None) -> Deferred[None]:
        return self._pool.run(thd_failed, delivery_id, now, status, error, next_attempt_at)

    def prune(self, delivered_before: float) -> Deferred[int]:
        return self._pool.run(thd_prune, delivered_before)

    def dead_count(self) -> Deferred[int]:
        return self._pool.run(thd_dead_count)


@dataclasses.dataclass
class _Sub:
    subscription: WebhookSubscription
    secret: str
    cursors: dict[str, int]


class MemoryWebhooks:
    """`WebhookStore` in process memory; every Deferred has already fired. Its event logs are
    filled with `append` (the audit events it is given go there too). No gaps: ids are
    consecutive."""

    def __init__(self) -> None:
        self.logs: dict[str, list[tuple[int, Event]]] = {"task": [], "agent": []}
        self._subs: dict[str, _Sub] = {}
        self._deliveries: dict[int, WebhookDelivery] = {}
        self._payloads: dict[int, dict[str, Any]] = {}

    def append(self, event: Event) -> str:
        """Commit one event to its log; its webhook event id."""
        log = "task" if event.task_id is not None else "agent"
        entries = self.logs[log]
        entries.append((len(entries) + 1, event))
        return f"{log}-{len(entries)}"

    def add_subscription(self, subscription: WebhookSubscription, secret: str,
                         events: Sequence[Event] = ()) -> Deferred[None]:
        for e in events:
            self.append(e)
        self._subs[subscription.id] = _Sub(subscription, secret,
                                           {log: len(self.logs[log]) for log, _ in LOGS})
        return succeed(None)

    def subscriptions(self) -> Deferred[list[WebhookSubscription]]:
        subs = sorted((s.subscription for s in self._subs.values()),
                      key=lambda s: (s.created_at, s.id))
        return succeed(subs)

    def subscription(self, subscription_id: str) -> Deferred[WebhookSubscription | None]:
        found = self._subs.get(subscription_id)
        return succeed(found.subscription if found else None)

    def remove_subscription(self, subscription_id: str,
                            events: Sequence[Event] = ()) -> Deferred[bool]:
        if self._subs.pop(subscription_id, None) is None:
            return succeed(False)
        for key in [k for k, d in self._deliveries.items()
                    if d.subscription_id == subscription_id]:
            del self._deliveries[key]
        for e in events:
            self.append(e)
        return succeed(True)

    def deliveries(self, subscription_id: str, state: str | None, limit: int,
                   before: int | None) -> Deferred[list[WebhookDelivery]]:
        found = [d for k, d in sorted(self._deliveries.items(), reverse=True)
                 if d.subscription_id == subscription_id and state in (None, d.state)
                 and (before is None or k < before)]
        return succeed(found[:limit])

    def redeliver(self, subscription_id: str, delivery_id: int, now: float,
                  events: Sequence[Event] = ()) -> Deferred[bool]:
        d = self._deliveries.get(delivery_id)
        if d is None or d.subscription_id != subscription_id:
            return succeed(False)
        self._deliveries[delivery_id] = dataclasses.replace(
            d, state=WEBHOOK_PENDING, attempts=0, next_attempt_at=now)
        for e in events:
            self.append(e)
        return succeed(True)

    def fan_out(self, now: float, settle: float, limit: int, matches: Matches) -> Deferred[int]:
        made = 0
        for sub in self._subs.values():
            if sub.subscription.disabled:
                continue
            for log, _ in LOGS:
                start = sub.cursors[log]
                for log_id, e in self.logs[log][start:start + limit]:
                    sub.cursors[log] = log_id
                    event_id = f"{log}-{log_id}"
                    if not matches(sub.subscription.kinds, e.kind) or any(
                            d.subscription_id == sub.subscription.id and d.event_id == event_id
                            for d in self._deliveries.values()):
                        continue
                    key = len(self._payloads) + 1
                    self._payloads[key] = event_payload(log, log_id, e.kind, e.at, e.task_id,
                                                        e.agent_id, e.actor,
                                                        snapshot(e.data))
                    self._deliveries[key] = WebhookDelivery(
                        key, sub.subscription.id, event_id, e.kind, WEBHOOK_PENDING, 0, now, now,
                        None, None, None)
                    made += 1
        return succeed(made)

    def due(self, now: float, each: int,
            exclude: Sequence[int] = ()) -> Deferred[list[WebhookDue]]:
        found: list[WebhookDue] = []
        for sub_id in sorted(self._subs):
            sub = self._subs[sub_id]
            if sub.subscription.disabled:
                continue
            mine = sorted((d for d in self._deliveries.values()
                           if d.subscription_id == sub_id and d.state == WEBHOOK_PENDING
                           and d.next_attempt_at is not None and d.next_attempt_at <= now
                           and d.id not in exclude),
                          key=lambda d: (d.next_attempt_at, d.id))
            found += [WebhookDue(d.id, sub_id, sub.subscription.url, sub.secret, d.event_id,
                                 dict(self._payloads[d.id]), d.attempts) for d in mine[:each]]
        return succeed(found)

    def delivered(self, delivery_id: int, now: float, status: int) -> Deferred[None]:
        d = self._deliveries.get(delivery_id)
        if d is not None:
            self._deliveries[delivery_id] = dataclasses.replace(
                d, state=WEBHOOK_DELIVERED, attempts=d.attempts + 1, last_status=status,
                last_error=None, delivered_at=now, next_attempt_at=None)
        return succeed(None)

    def failed(self, delivery_id: int, now: float, status: int | None, error: str,
               next_attempt_at: float | None) -> Deferred[None]:
        d = self._deliveries.get(delivery_id)
        if d is not None:
            self._deliveries[delivery_id] = dataclasses.replace(
                d, state=WEBHOOK_PENDING if next_attempt_at is not None else WEBHOOK_DEAD,
                attempts=d.attempts + 1, last_status=status, last_error=error[:ERROR_CHARS],
                next_attempt_at=next_attempt_at)
        return succeed(None)

    def prune(self, delivered_before: float) -> Deferred[int]:
        gone = [k for k, d in self._deliveries.items() if d.state == WEBHOOK_DELIVERED
                and d.delivered_at is not None and d.delivered_at < delivered_before]
        for k in gone:
            del self._deliveries[k]
        return succeed(len(gone))

    def dead_count(self) -> Deferred[int]:
        return succeed(sum(d.state == WEBHOOK_DEAD for d in self._deliveries.values()))
