"""Files agents upload for their replies: the `UploadStore` port on SQL (`SqlUploads`) and in
memory (`MemoryUploads`, for unit tests; the same contract suite runs on both).

Sits under `dispatcher.storage`. `put` has committed when its Deferred fires (the HTTP answer
201 comes after it); `take` reads only the owner's files; `drop` removes files once a reply
carrying them is committed; `prune` removes files older than a cut-off (never used). The
`thd_*` functions run on the database thread and return dataclasses, never rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred, succeed

from dispatcher.service.ports import Upload

from . import tables as t
from .pool import Pool

_FIELDS = tuple(f.name for f in dataclasses.fields(Upload))


def thd_put_upload(conn: sa.Connection, row: dict[str, Any]) -> None:
    conn.execute(t.email_uploads.insert().values(**row))


def thd_take_uploads(conn: sa.Connection, owner: str, ids: list[str]) -> list[Upload]:
    table = t.email_uploads
    rows = conn.execute(sa.select(*(table.c[f] for f in _FIELDS))
                        .where(table.c.owner == owner, table.c.id.in_(ids))).all()
    found = {row.id: Upload(*row[:-2], bytes(row.content), row.created_at) for row in rows}
    return [found[i] for i in ids if i in found]


def thd_drop_uploads(conn: sa.Connection, ids: list[str]) -> None:
    conn.execute(t.email_uploads.delete().where(t.email_uploads.c.id.in_(ids)))


def thd_prune_uploads(conn: sa.Connection, before: float) -> int:
    table = t.email_uploads
    return conn.execute(table.delete().where(table.c.created_at < before)).rowcount


class SqlUploads:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def put(self, upload: Upload) -> Deferred[None]:
        return self._pool.run(thd_put_upload, dataclasses.asdict(upload))

    def take(self, owner: str, ids: Sequence[str]) -> Deferred[list[Upload]]:
        return self._pool.run(thd_take_uploads, owner, list(ids))

    def drop(self, ids: Sequence[str]) -> Deferred[None]:
        return self._pool.run(thd_drop_uploads, list(ids))

    def prune(self, before: float) -> Deferred[int]:
        return self._pool.run(thd_prune_uploads, before)


class MemoryUploads:
    def __init__(self) -> None:
        self.files: dict[str, Upload] = {}

    def put(self, upload: Upload) -> Deferred[None]:
        self.files[upload.id] = upload
        return succeed(None)

    def take(self, owner: str, ids: Sequence[str]) -> Deferred[list[Upload]]:
        return succeed([self.files[i] for i in ids
                        if i in self.files and self.files[i].owner == owner])

    def drop(self, ids: Sequence[str]) -> Deferred[None]:
        for i in ids:
            self.files.pop(i, None)
        return succeed(None)

    def prune(self, before: float) -> Deferred[int]:
        old = [i for i, u in self.files.items() if u.created_at < before]
        for i in old:
            del self.files[i]
        return succeed(len(old))
