"""Alembic's environment for Switchboard's migrations.

Configured programmatically by `dispatcher.storage.schema` (no alembic.ini at run time): the
database URL comes in `config.attributes["url"]` (or the `sqlalchemy.url` option), and the
engine is `dispatcher.storage.engine.make_engine`, so SQLite gets the same pragmas and real
transactions as the server: a whole upgrade is one transaction on SQLite and PostgreSQL.

`target_metadata` (the live tables) is used only by autogenerate to compare and draft a new
revision; the revisions themselves never import it.
"""

from __future__ import annotations

from alembic import context

from dispatcher.storage.engine import is_sqlite, make_engine
from dispatcher.storage.tables import metadata as target_metadata

VERSION_TABLE = "alembic_version"

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set config.attributes['url'] or sqlalchemy.url")
    return str(url)


def _options(url: str) -> dict:
    return {
        "target_metadata": target_metadata,
        "version_table": VERSION_TABLE,
        "render_as_batch": is_sqlite(url),  # SQLite alters tables by copying them
        "compare_type": True,
    }


def run_offline() -> None:
    url = _url()
    context.configure(url=url, literal_binds=True, **_options(url))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    url = _url()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, **_options(url))
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
