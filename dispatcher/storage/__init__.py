"""The durable store: SQLAlchemy Core on a Twisted thread pool (buildbot's pattern).

`tables` (the schema), `engine` (SQLite/PostgreSQL engines), `pool` (one transaction per call,
off the reactor thread), `commit` (group commit), `sql` (`SqlStore`, the `Store` port on SQL),
`memory` (`MemoryStore`, the same port in memory), `schema` (Alembic: head, current, upgrade).
"""
