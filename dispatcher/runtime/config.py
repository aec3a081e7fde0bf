"""Configuration: defaults < TOML file < `SWITCHBOARD_*` environment variables.

A key `[section] name` is overridden by `SWITCHBOARD_SECTION_NAME`; any value may instead be
read from a file named by `SWITCHBOARD_SECTION_NAME_FILE` (for secrets). Every problem found —
unknown section or key, a value of the wrong type, an unreadable file — is collected and
reported at once in one `ConfigError`, never one at a time.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from dispatcher.domain.agents import interruptions
from dispatcher.domain.errors import InvalidValue

ENV_PREFIX = "SWITCHBOARD_"
DEFAULT_CONFIG_FILE = "switchboard.toml"


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("configuration errors:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///switchboard.db"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    http_port: int = 8080
    # One full garbage collection on schedule instead of many at random (runtime/collector.py);
    # 0: freeze once at start only.
    gc_refreeze_seconds: float = 300.0
    # Limits under abuse (docs/operations.md): HTTP request head within header_timeout of the
    # connection or of its first byte (also the WebSocket servers' opening handshake), body
    # within body_timeout, idle connections closed after idle_timeout (seconds); the largest
    # body of a resource that states no cap of its own.
    header_timeout: float = 10.0
    body_timeout: float = 120.0
    idle_timeout: float = 60.0
    max_body_bytes: int = 16 * 1024 * 1024
    # Concurrent connections of one source address on each listener (HTTP, SMTP, SIP/TCP,
    # console, CTI), and in all (0: the descriptor limit, raised to its hard value at start,
    # minus an eighth kept for the rest of the process).
    max_connections_per_ip: int = 64
    max_connections: int = 0
    # Customers whose card and timeline are kept in memory for the offers
    # (service/history_cache.py); 0: every offer reads them from the database.
    history_cache_customers: int = 10_000


@dataclass(frozen=True)
class ClusterConfig:
    # Several nodes on one PostgreSQL database (docs/operations.md, "Several nodes"): the one
    # that holds the database's lease routes, renewing it; the others wait as standbys and take
    # over when it ends. `node`: this node's name in the lease, the logs and /healthz (empty:
    # host name and HTTP port). SQLite is single-node: no lease.
    node: str = ""
    lease_seconds: float = 10.0
    # all: this node routes when it holds the lease, and while it waits its SMTP holds mail
    # for the router; edge: never routes, only holds mail; router: no edge while it waits.
    role: str = "all"
    # A deposed leader starts again in its own process as a standby (true), or exits with 75
    # for its supervisor to restart it (false).
    restart_when_deposed: bool = True
    # The host name or address other nodes and agents' browsers reach this node by: a node that
    # does not route passes its agents' sockets and HTTP requests on to the leader's (empty:
    # [server] host, or the host's name when that is a wildcard such as 0.0.0.0).
    advertise: str = ""


@dataclass(frozen=True)
class WebhooksConfig:
    # docs/webhooks.md: how often committed events are looked for, attempts before a delivery
    # is dead, seconds a receiver has to answer, POSTs in flight in all and per subscription,
    # days a delivered delivery is kept (dead ones stay).
    enabled: bool = True
    poll_seconds: float = 1.0
    max_attempts: int = 8
    timeout: float = 10.0
    max_in_flight: int = 16
    per_subscription: int = 2
    keep_days: float = 7.0


@dataclass(frozen=True)
class RoutingConfig:
    # The centre's blend (docs/routing.md, "The blend"): what may still be offered to an agent
    # who holds a task of each channel, for agents without a matrix of their own. Default: a
    # call may come on top of e-mail work; nothing comes on top of a call.
    interruptions: str = "email:email,phone; phone:"


@dataclass(frozen=True)
class ReportsConfig:
    # Today's figures (docs/metrics.md, "Today's figures and their checkpoints"): the process
    # that routes saves the day's fold this often (seconds) and when it stops, so that a
    # restart reads only the log after it; 0: no checkpoints (a start reads the whole day).
    # Every 5 minutes: a save costs about 2-3 s of the reader thread's CPU for a day of
    # 100,000 tasks (a 21 MB row), while a tail of 5 minutes folds in well under a second.
    checkpoint_seconds: float = 300.0


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    format: str = "text"  # text | json


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    log: LogConfig = field(default_factory=LogConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    # Settings of the loaded edges, by section name (see dispatcher.service.edges.EdgeSpec).
    edges: Mapping[str, Any] = field(default_factory=dict)


ROLES = ("all", "edge", "router")  # [cluster] role, `serve --role`
MIN_LEASE_SECONDS = 1.0  # renewed three times per lease: shorter is all round trips
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


def _convert(raw: Any, kind: type, where: str, problems: list[str]) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no",
                                                     "off"):
            return raw.lower() in ("1", "true", "yes", "on")
    elif kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            return int(raw)
    elif kind is float:
        try:
            value = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError):
            value = math.nan
        if math.isfinite(value):  # "nan" and "inf" parse, but are no setting
            return value
    elif kind is str and isinstance(raw, str):
        return raw
    problems.append(f"{where}: expected {kind.__name__}, got {raw!r}")
    return None


def _section(sname: str, cls: type, given: Any, env: Mapping[str, str],
             problems: list[str]) -> Any:
    """One section: the dataclass defaults, then the TOML table, then the environment."""
    hints = get_type_hints(cls)
    if not isinstance(given, dict):
        problems.append(f"[{sname}]: must be a table")
        given = {}
    for key in given:
        if key not in hints:
            problems.append(f"[{sname}] {key}: unknown key (known: {', '.join(hints)})")
    values: dict[str, Any] = {}
    for key, kind in hints.items():
        env_name = f"{ENV_PREFIX}{sname}_{key}".upper()
        if key in given:
            values[key] = _convert(given[key], kind, f"[{sname}] {key}", problems)
        if env_name in env:
            values[key] = _convert(env[env_name], kind, env_name, problems)
        if env_name + "_FILE" in env:
            try:
                text = Path(env[env_name + "_FILE"]).read_text(encoding="utf-8").strip()
                values[key] = _convert(text, kind, env_name + "_FILE", problems)
            except OSError as exc:
                problems.append(f"{env_name}_FILE: cannot read: {exc.strerror}")
    return cls(**{k: v for k, v in values.items() if v is not None})


def load(  # noqa: C901 - each setting section validated in turn, every problem listed
    path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
    edges: Mapping[str, type] | None = None,
) -> Config:
    """Build the configuration. `path` None: ./switchboard.toml if present (or the file named by
    SWITCHBOARD_CONFIG). `edges`: section name -> settings dataclass of each loaded edge.
    Raises ConfigError listing every problem."""
    env = os.environ if env is None else env
    problems: list[str] = []
    data: dict[str, Any] = {}
    if path is None:
        path = env.get(ENV_PREFIX + "CONFIG") or (
            DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).exists() else None
        )
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror}")
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{path}: not valid TOML: {exc}")

    sections: dict[str, type] = {
        f.name: f.default_factory  # type: ignore[misc]
        for f in dataclasses.fields(Config)
        if f.name != "edges"
    }
    for name, cls in (edges or {}).items():
        if name in sections:
            problems.append(f"edge {name!r} uses the name of a core section")
        sections.setdefault(name, cls)
    for name in data:
        if name not in sections:
            problems.append(f"[{name}]: unknown section (known: {', '.join(sections)})")
    built: dict[str, Any] = {}
    for sname, cls in sections.items():
        built[sname] = _section(sname, cls, data.get(sname, {}), env, problems)
    edge_settings = {name: built.pop(name) for name in (edges or {}) if name in built}
    config = Config(**built, edges=edge_settings)
    if config.log.level.upper() not in LOG_LEVELS:
        problems.append(f"[log] level: one of {', '.join(LOG_LEVELS)}")
    if config.log.format not in LOG_FORMATS:
        problems.append(f"[log] format: one of {', '.join(LOG_FORMATS)}")
    if not 0 <= config.server.http_port <= 65535:
        problems.append("[server] http_port: 0-65535")
    for name in ("header_timeout", "body_timeout", "idle_timeout"):
        if not getattr(config.server, name) > 0:
            problems.append(f"[server] {name}: must be > 0 seconds")
    if config.server.max_body_bytes < 0:
        problems.append("[server] max_body_bytes: must be >= 0")
    if config.server.max_connections_per_ip < 1:
        problems.append("[server] max_connections_per_ip: must be >= 1")
    if config.server.max_connections < 0:
        problems.append("[server] max_connections: must be >= 0 (0: from the descriptor limit)")
    if config.server.history_cache_customers < 0:
        problems.append("[server] history_cache_customers: must be >= 0 (0: no cache)")
    if config.cluster.role not in ROLES:
        problems.append(f"[cluster] role: one of {', '.join(ROLES)}")
    if config.cluster.lease_seconds < MIN_LEASE_SECONDS:
        problems.append(f"[cluster] lease_seconds: must be >= {MIN_LEASE_SECONDS} seconds")
    for name in ("poll_seconds", "timeout", "keep_days"):
        if not getattr(config.webhooks, name) > 0:
            problems.append(f"[webhooks] {name}: must be > 0")
    for name in ("max_attempts", "max_in_flight", "per_subscription"):
        if getattr(config.webhooks, name) < 1:
            problems.append(f"[webhooks] {name}: must be >= 1")
    if config.reports.checkpoint_seconds < 0:
        problems.append("[reports] checkpoint_seconds: must be >= 0 (0: no checkpoints)")
    try:
        interruptions(config.routing.interruptions, "[routing] interruptions")
    except InvalidValue as exc:
        problems.append(str(exc))
    if problems:
        raise ConfigError(problems)
    return config
