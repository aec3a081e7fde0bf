"""One `switchboard serve` for the API's end-to-end tests (started once per session: most of
a start is the interpreter), on SQLite, with the console's secret file signing the tokens the
API checks; the e-mail and phone edges off."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from twisted.internet.task import Clock

from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.accounts import Accounts
from dispatcher.storage import schema
from dispatcher.storage.accounts import SqlAccounts
from tests.dispatcher.runtime.running import base_env, free_port, serving
from tests.dispatcher.storage.wiring import wire

SECRET = b"api-e2e-secret-" + b"y" * 40


def prepare(url: str) -> None:
    """Queues support and sales, agents a1 and a2, supervisor `boss` and the disabled
    supervisor `gone`."""
    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(w.store.put_queue(Queue("support")))
        w.wait(w.store.put_queue(Queue("sales")))
        for agent_id in ("a1", "a2"):
            w.wait(w.store.put_agent(Agent(agent_id, name=f"Agent {agent_id}",
                                           queues={"support"},
                                           capacity={Channel.EMAIL: 3, Channel.PHONE: 1},
                                           channels={Channel.EMAIL, Channel.PHONE})))
        accounts = Accounts(SqlAccounts(w.pool), w.store, Clock())
        w.wait(accounts.set("boss", "supervisor", "Boss"))
        w.wait(accounts.set("gone", "supervisor", "Gone"))
        w.wait(accounts.disable("gone"))
    finally:
        w.close()


def token(sub: str, role: str, ttl: int = 600, secret: bytes = SECRET) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": role, "iat": now, "exp": now + ttl,
                       "iss": "switchboard", "aud": "switchboard-console"}, secret,
                      algorithm="HS256")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes


@dataclass
class Server:
    base: str
    ws_port: int
    log: Path

    def call(self, method: str, path: str, body: Any = None, *, role: str | None = None,
             sub: str | None = None, bearer: str | None = None, raw: bytes | None = None,
             content_type: str = "application/json") -> Answer:
        """One request; `role` signs a token for `sub` (default: boss, a1, crm by role)."""
        headers = {}
        if role is not None:
            who = sub or {"supervisor": "boss", "agent": "a1", "integration": "crm"}[role]
            bearer = token(who, role)
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                status, got, hdrs = r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            status, got, hdrs = e.code, e.read(), dict(e.headers)
        hdrs = {k.lower(): v for k, v in hdrs.items()}
        try:
            parsed = json.loads(got) if got else None
        except ValueError:
            parsed = None
        return Answer(status, hdrs, parsed, got)


@contextmanager
def started(tmp: Path, **settings: str) -> Iterator[Server]:
    """A prepared database in `tmp` and `switchboard serve` on it, until the block ends;
    `settings`: more SWITCHBOARD_* variables (by default the request budget is far above what
    the suites send, so only the rate-limit test meets a 429)."""
    url = f"sqlite:///{tmp / 'switchboard.db'}"
    prepare(url)
    (tmp / "console.secret").write_bytes(SECRET)
    http, ws = free_port(), free_port()
    env = base_env(
        SWITCHBOARD_DATABASE_URL=url, SWITCHBOARD_SERVER_HTTP_PORT=str(http),
        SWITCHBOARD_CONSOLE_PORT=str(ws),
        SWITCHBOARD_CONSOLE_JWT_SECRET_FILE=str(tmp / "console.secret"),
        SWITCHBOARD_API_JWT_SECRET_FILE=str(tmp / "console.secret"),
        SWITCHBOARD_EMAIL_ENABLED="false", SWITCHBOARD_PHONE_ENABLED="false",
        **{"SWITCHBOARD_API_RATE_LIMIT_PER_SECOND": "10000",
           "SWITCHBOARD_API_RATE_LIMIT_BURST": "100000", **settings},
    )
    with serving(tmp, env, (http, ws)) as log:
        yield Server(f"http://127.0.0.1:{http}", ws, log)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    """The server most API tests share (they create what they need, with distinct names)."""
    with started(tmp_path_factory.mktemp("api-e2e")) as running:
        yield running
