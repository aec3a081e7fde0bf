"""The schema version: what the code expects (`head`), what a database has (`current`), and the
upgrade between them, through Alembic configured in code (no alembic.ini needed at run time).

Sits under `dispatcher.storage`; the CLI (`switchboard db upgrade`) and `serve` use it. `serve`
refuses a database whose `check(url).ok` is false and prints `STALE_SCHEMA_HINT`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .engine import make_engine

STALE_SCHEMA_HINT = "run: switchboard db upgrade"
MIGRATIONS_PACKAGE = "migrations"
VERSION_TABLE = "alembic_version"  # as set in migrations/env.py


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    current: str | None
    head: str
    ok: bool


def migrations_dir() -> Path:
    spec = importlib.util.find_spec(MIGRATIONS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {MIGRATIONS_PACKAGE!r} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def config(url: str | None = None) -> Config:
    """An Alembic config for `url` (for `alembic.command` functions: upgrade, revision...)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        cfg.attributes["url"] = url  # not a main option: configparser would mangle '%'
    return cfg


def head() -> str:
    found = ScriptDirectory.from_config(config()).get_current_head()
    if found is None:
        raise RuntimeError("no migration revisions found")
    return found


def current(url: str) -> str | None:
    """The revision the database at `url` is at; None for an empty database."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return ctx.get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(config(url), revision)


def check(url: str) -> SchemaStatus:
    at, expected = current(url), head()
    return SchemaStatus(current=at, head=expected, ok=at == expected)
