"""Phone accounts and registrar bindings: the `PhoneStore` port on SQL (`SqlPhones`) and in
memory (`MemoryPhones`, for unit tests and the simulator; the same contract suite runs on both).

Sits under `dispatcher.storage`. Each write is its own transaction on the pool's thread and has
committed when its Deferred fires, so the registrar answers 200 only for a stored binding; an
account's change commits with its audit events (the agent log) in that same transaction. The
`thd_*` functions run on the database thread and return dataclasses, never rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred, succeed

from dispatcher.domain.events import Event
from dispatcher.service.ports import Binding, Changes, PhoneAccount

from . import rows as r
from . import tables as t
from .bulk import append_events
from .pool import Pool

_ACCOUNT_FIELDS = tuple(f.name for f in dataclasses.fields(PhoneAccount))
_BINDING_FIELDS = tuple(f.name for f in dataclasses.fields(Binding))


def thd_put_phone_account(conn: sa.Connection, row: dict[str, Any],
                          events: list[r.Row] | None = None) -> None:
    table = t.phone_accounts
    conn.execute(table.delete().where(table.c.agent_id == row["agent_id"]))
    conn.execute(table.insert().values(**row))
    append_events(conn, events or [])


def thd_remove_phone_account(conn: sa.Connection, agent_id: str,
                             events: list[r.Row] | None = None) -> bool:
    conn.execute(t.phone_bindings.delete().where(t.phone_bindings.c.agent_id == agent_id))
    result = conn.execute(t.phone_accounts.delete().where(t.phone_accounts.c.agent_id == agent_id))
    if result.rowcount == 0:
        return False
    append_events(conn, events or [])
    return True


def thd_list_phone_accounts(conn: sa.Connection) -> list[PhoneAccount]:
    table = t.phone_accounts
    rows = conn.execute(sa.select(*(table.c[f] for f in _ACCOUNT_FIELDS))
                        .order_by(table.c.agent_id)).all()
    return [PhoneAccount(*row) for row in rows]


def thd_put_binding(conn: sa.Connection, row: dict[str, Any]) -> None:
    table = t.phone_bindings
    conn.execute(table.delete().where(table.c.agent_id == row["agent_id"]))
    conn.execute(table.insert().values(**row))


def thd_remove_binding(conn: sa.Connection, agent_id: str) -> None:
    conn.execute(t.phone_bindings.delete().where(t.phone_bindings.c.agent_id == agent_id))


def thd_list_bindings(conn: sa.Connection) -> list[Binding]:
    table = t.phone_bindings
    rows = conn.execute(sa.select(*(table.c[f] for f in _BINDING_FIELDS))
                        .order_by(table.c.agent_id)).all()
    return [Binding(*row) for row in rows]


class SqlPhones:
    """`PhoneStore` on SQL. `clock` stamps `updated_at` of accounts."""

    def __init__(self, pool: Pool, clock) -> None:
        self._pool = pool
        self._clock = clock

    def put_phone_account(self, account: PhoneAccount, events: Sequence[Event] = ()
                          ) -> Deferred[None]:
        row = dataclasses.asdict(account) | {"updated_at": self._clock()}
        return self._pool.run(thd_put_phone_account, row, [r.event_row(e) for e in events])

    def remove_phone_account(self, agent_id: str, events: Sequence[Event] = ()
                             ) -> Deferred[bool]:
        return self._pool.run(thd_remove_phone_account, agent_id,
                              [r.event_row(e) for e in events])

    def list_phone_accounts(self) -> Deferred[list[PhoneAccount]]:
        return self._pool.run(thd_list_phone_accounts)

    def put_binding(self, binding: Binding) -> Deferred[None]:
        return self._pool.run(thd_put_binding, dataclasses.asdict(binding))

    def remove_binding(self, agent_id: str) -> Deferred[None]:
        return self._pool.run(thd_remove_binding, agent_id)

    def list_bindings(self) -> Deferred[list[Binding]]:
        return self._pool.run(thd_list_bindings)


class MemoryPhones:
    """`PhoneStore` in process memory; every Deferred has already fired. Unique sip users and
    extensions are enforced as the database's constraints do (ValueError). Audit events go to
    `store`'s agent log (a `MemoryStore`; without one, a write with events is refused)."""

    def __init__(self, store: Any = None) -> None:
        self._accounts: dict[str, PhoneAccount] = {}
        self._bindings: dict[str, Binding] = {}
        self._store = store

    def _log(self, events: Sequence[Event]) -> None:
        if events:
            if self._store is None:
                raise ValueError("MemoryPhones(store=...) is needed to keep audit events")
            self._store.record(Changes(events=list(events)))

    def put_phone_account(self, account: PhoneAccount, events: Sequence[Event] = ()
                          ) -> Deferred[None]:
        for other in self._accounts.values():
            if other.agent_id == account.agent_id:
                continue
            if account.sip_user is not None and other.sip_user == account.sip_user:
                raise ValueError(f"sip user {account.sip_user!r} belongs to {other.agent_id}")
            if account.extension is not None and other.extension == account.extension:
                raise ValueError(f"extension {account.extension!r} belongs to {other.agent_id}")
        self._accounts[account.agent_id] = account
        self._log(events)
        return succeed(None)

    def remove_phone_account(self, agent_id: str, events: Sequence[Event] = ()
                             ) -> Deferred[bool]:
        self._bindings.pop(agent_id, None)
        if self._accounts.pop(agent_id, None) is None:
            return succeed(False)
        self._log(events)
        return succeed(True)

    def list_phone_accounts(self) -> Deferred[list[PhoneAccount]]:
        return succeed([self._accounts[k] for k in sorted(self._accounts)])

    def put_binding(self, binding: Binding) -> Deferred[None]:
        self._bindings[binding.agent_id] = binding
        return succeed(None)

    def remove_binding(self, agent_id: str) -> Deferred[None]:
        self._bindings.pop(agent_id, None)
        return succeed(None)

    def list_bindings(self) -> Deferred[list[Binding]]:
        return succeed([self._bindings[k] for k in sorted(self._bindings)])
