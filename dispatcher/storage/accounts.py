"""Console accounts: the `AccountStore` port on SQL (`SqlAccounts`) and in memory
(`MemoryAccounts`, for unit tests and the test consoles; the same contract suite runs on both).

Sits under `dispatcher.storage`. Each call is one transaction on the pool's thread, committed
when its Deferred fires; an account's audit events go to the agent log in the same transaction.
The `thd_*` functions run on the database thread and return dataclasses, never rows. Only the
password's hash is ever stored (the service hashes it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred, succeed

from dispatcher.domain.events import Event
from dispatcher.service.ports import Account

from . import tables as t
from .pool import Pool
from .rows import event_row

_FIELDS = tuple(f.name for f in dataclasses.fields(Account))
_SELECT = sa.select(*(t.accounts.c[f] for f in _FIELDS))


def thd_get_account(conn: sa.Connection, account_id: str) -> Account | None:
    row = conn.execute(_SELECT.where(t.accounts.c.id == account_id)).first()
    return Account(*row) if row is not None else None


def thd_list_accounts(conn: sa.Connection) -> list[Account]:
    return [Account(*row) for row in conn.execute(_SELECT.order_by(t.accounts.c.id)).all()]


def thd_put_account(conn: sa.Connection, row: dict[str, Any], events: list[dict]) -> None:
    table = t.accounts
    old = conn.execute(sa.select(table.c.created_at).where(table.c.id == row["id"])).first()
    if old is None:
        conn.execute(table.insert().values(**row))
    else:
        values = {k: v for k, v in row.items() if k not in ("id", "created_at")}
        conn.execute(table.update().where(table.c.id == row["id"]).values(**values))
    if events:
        conn.execute(t.agent_events.insert(), events)


def thd_remove_account(conn: sa.Connection, account_id: str, events: list[dict]) -> bool:
    result = conn.execute(t.accounts.delete().where(t.accounts.c.id == account_id))
    if result.rowcount == 0:
        return False
    if events:
        conn.execute(t.agent_events.insert(), events)
    return True


def thd_replace_hash(conn: sa.Connection, account_id: str, old: str, new: str,
                     now: float) -> bool:
    table = t.accounts
    result = conn.execute(table.update()
                          .where(table.c.id == account_id, table.c.password_hash == old)
                          .values(password_hash=new, updated_at=now))
    return result.rowcount > 0


class SqlAccounts:
    """`AccountStore` on SQL."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def get_account(self, account_id: str) -> Deferred[Account | None]:
        return self._pool.run(thd_get_account, account_id)

    def list_accounts(self) -> Deferred[list[Account]]:
        return self._pool.run(thd_list_accounts)

    def put_account(self, account: Account, events: Sequence[Event] = ()) -> Deferred[None]:
        return self._pool.run(thd_put_account, dataclasses.asdict(account),
                              [event_row(e) for e in events])

    def remove_account(self, account_id: str, events: Sequence[Event] = ()) -> Deferred[bool]:
        return self._pool.run(thd_remove_account, account_id, [event_row(e) for e in events])

    def replace_hash(self, account_id: str, old: str, new: str, now: float) -> Deferred[bool]:
        return self._pool.run(thd_replace_hash, account_id, old, new, now)


class MemoryAccounts:
    """`AccountStore` in process memory; every Deferred has already fired. `events` holds what
    SqlAccounts appends to the agent log (inspectable by tests)."""

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        self.events: list[Event] = []

    def get_account(self, account_id: str) -> Deferred[Account | None]:
        return succeed(self._accounts.get(account_id))

    def list_accounts(self) -> Deferred[list[Account]]:
        return succeed([self._accounts[k] for k in sorted(self._accounts)])

    def put_account(self, account: Account, events: Sequence[Event] = ()) -> Deferred[None]:
        old = self._accounts.get(account.id)
        if old is not None:
            account = dataclasses.replace(account, created_at=old.created_at)
        self._accounts[account.id] = account
        self.events.extend(events)
        return succeed(None)

    def remove_account(self, account_id: str, events: Sequence[Event] = ()) -> Deferred[bool]:
        if self._accounts.pop(account_id, None) is None:
            return succeed(False)
        self.events.extend(events)
        return succeed(True)

    def replace_hash(self, account_id: str, old: str, new: str, now: float) -> Deferred[bool]:
        account = self._accounts.get(account_id)
        if account is None or account.password_hash != old:
            return succeed(False)
        self._accounts[account_id] = dataclasses.replace(account, password_hash=new,
                                                         updated_at=now)
        return succeed(True)
