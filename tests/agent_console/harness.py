"""A real console on 127.0.0.1 for the protocol tests: the service layer on a MemoryStore, timers
on the asyncio loop (`LoopClock` plays the reactor's IReactorTime), the real `ConsoleServer`
and real `websockets` clients. Each test runs its own loop (`run`). Console accounts live in
memory (`Console.accounts`); `connect(sub, role="supervisor")` gives the supervisor an enabled
account first (the hello refuses a supervisor token without one)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from twisted.internet.defer import ensureDeferred
from websockets.asyncio.client import ClientConnection, connect

from agent_console import messages as m
from agent_console.auth import Signer, load_keys, verifier_for
from agent_console.config import ConsoleSettings
from agent_console.server import ConsoleServer
from agent_console.session import Desks
from agent_console.supervision import LiveFeed
from dispatcher.aio import to_future
from dispatcher.domain.agents import Agent
from dispatcher.domain.queues import Queue
from dispatcher.domain.routing import Router
from dispatcher.domain.tasks import Channel
from dispatcher.service.accounts import Accounts
from dispatcher.service.assignment import Assignment
from dispatcher.service.configuration import Configuration
from dispatcher.service.history import History
from dispatcher.service.intake import Intake, email_identity, phone_identity
from dispatcher.service.queries import Queries
from dispatcher.service.reports import Today
from dispatcher.service.sessions import Sessions
from dispatcher.service.supervision import Balancing, Supervision
from dispatcher.storage.accounts import MemoryAccounts
from dispatcher.storage.memory import MemoryStore

ORIGIN = "http://127.0.0.1:8080"
FRAME_TIMEOUT = 5.0
SECRET = b"s" * 48
CHEAP_HASHER = dict(time_cost=1, memory_cost=1024, parallelism=1)  # test passwords only


class _Call:
    def __init__(self, handle_for: Callable[[_Call], asyncio.TimerHandle], when: float) -> None:
        self.called = self.cancelled = False
        self.when = when
        self.handle = handle_for(self)

    def active(self) -> bool:
        return not (self.called or self.cancelled)

    def cancel(self) -> None:
        self.cancelled = True
        self.handle.cancel()

    def getTime(self) -> float:
        return self.when


class LoopClock:
    """IReactorTime on the running asyncio loop (what the asyncio reactor gives in production)."""

    def seconds(self) -> float:
        return time.time()

    def callLater(self, delay: float, fn: Callable[..., Any], *args: Any, **kw: Any) -> _Call:
        loop = asyncio.get_running_loop()

        def fire(call: _Call) -> None:
            call.called = True
            fn(*args, **kw)

        return _Call(lambda c: loop.call_later(delay, fire, c), time.time() + delay)

    def getDelayedCalls(self) -> list:
        return []


def run(coro_fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """Run an async test in a fresh event loop."""
    @functools.wraps(coro_fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        return asyncio.run(asyncio.wait_for(coro_fn(*args, **kw), 60))
    return wrapper


@dataclass
class Console:
    settings: ConsoleSettings
    store: MemoryStore
    router: Router
    assignment: Assignment
    intake: Intake
    sessions: Sessions
    queries: Queries
    configuration: Configuration
    history: History
    desks: Desks
    server: ConsoleServer
    signer: Signer
    supervision: Supervision | None = None
    balancing: Balancing | None = None
    accounts: Accounts | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/"

    def token(self, sub: str = "a1", role: str = "agent", ttl: float = 600) -> str:
        return self.signer.issue(sub, role, ttl)

    async def connect(self, sub: str = "a1", role: str = "agent", hello: bool = True,
                      token: str | None = None, origin: str | None = ORIGIN) -> Client:
        if role == "supervisor" and token is None and self.accounts is not None \
                and await to_future(self.accounts.get(sub)) is None:
            await to_future(self.accounts.set(sub, "supervisor"))
        token = token or self.token(sub, role)
        ws = await connect(self.url, subprotocols=[m.SUBPROTOCOL, f"bearer.{token}"],
                           origin=origin, compression=None, open_timeout=5)
        client = Client(ws)
        if hello:
            await client.send({"type": "hello", "v": 1})
            client.welcome = await client.expect("welcome")
        return client

    async def put_agent(self, agent_id: str, support: int = 6, **kw: Any) -> None:
        agent = Agent(agent_id, name=agent_id.upper(), skills={"support": support},
                      queues={"support"}, **kw)
        await to_future(ensureDeferred(self.configuration.change_agent(agent)))

    async def mail(self, address: str = "ann@example.org", name: str = "Ann Example",
                   **attributes: Any):
        attributes.setdefault("subject", "My invoice")
        if "html" not in attributes:
            attributes.setdefault("text", "Hello,\nmy invoice is wrong.")
        return await to_future(self.intake.submit(
            Channel.EMAIL, "support", identity=email_identity(address), customer_name=name,
            attributes=attributes))

    async def call(self, number: str = "+3225550100", name: str = "Ann Example"):
        return await to_future(self.intake.submit(
            Channel.PHONE, "support", identity=phone_identity(number), customer_name=name,
            attributes={"caller": number}))

    async def stop(self) -> None:
        self.assignment.stop()
        if self.supervision is not None:
            self.supervision.stop()
        await self.server.stop()


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] | None = None
        self.seen: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send a request and wait for its ok/error (other frames are kept in `seen`)."""
        rid = next(self._ids)
        await self.send({"type": type_, "id": rid, **fields})
        return await self.expect(lambda f: f.get("re") == rid)

    async def expect(self, what: str | Callable[[dict], bool],
                     timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """The next frame (already seen or to come) matching `what` (a type or a predicate)."""
        match = (lambda f: f["type"] == what) if isinstance(what, str) else what
        for i, frame in enumerate(self.seen):
            if match(frame):
                return self.seen.pop(i)
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                if match(frame):
                    return frame
                self.seen.append(frame)

    async def close(self) -> None:
        await self.ws.close()


@dataclass
class Core:
    """The service layer a test console runs on: a MemoryStore, timers on the asyncio loop.
    A test that wires more services (mail, answers, codification...) makes one with `new_core()`,
    builds them on it, and gives them to `start_console(core=..., desks={...})`."""
    store: MemoryStore
    clock: LoopClock
    router: Router
    assignment: Assignment
    intake: Intake
    sessions: Sessions
    queries: Queries
    configuration: Configuration
    history: History


def new_core() -> Core:
    store, clock = MemoryStore(), LoopClock()
    router = Router(new_offer_id=map("o{}".format, itertools.count(1)).__next__)
    assignment = Assignment(router, store, clock)
    return Core(store, clock, router, assignment,
                Intake(assignment, store, clock,
                       new_id=map("t{}".format, itertools.count(1)).__next__),
                Sessions(assignment), Queries(router, store),
                Configuration(store, assignment.clock, assignment=assignment),
                History(store, assignment))


async def start_console(tmp_path: Path, queue: Queue | None = None, *, core: Core | None = None,
                        desks: dict[str, Any] | None = None, **overrides: Any) -> Console:
    """A console on `core` (a fresh one by default) with `queue` (default: support), whose
    `Desks` gets the keyword arguments `desks` (the services a test wires: answers,
    reply_hook, codification...) besides the supervisors' live feed and balancing;
    `overrides` change the console's settings."""
    secret = tmp_path / "console.secret"
    secret.write_bytes(SECRET)
    settings = replace(ConsoleSettings(port=0, jwt_secret_file=str(secret),
                                       allowed_origins=ORIGIN, grace_seconds=30.0,
                                       queues_interval_seconds=0.2), **overrides)
    base = core or new_core()
    clock, store, router, assignment = base.clock, base.store, base.router, base.assignment
    sessions, configuration, history = base.sessions, base.configuration, base.history
    # Supervisors: the live state (today's figures from the store's log) and balancing.
    supervision = Supervision(router, clock, Today(store, store, clock))
    balancing = Balancing(assignment, sessions=sessions, configuration=configuration)
    desks_ = Desks(clock=clock, sessions=sessions, queries=base.queries,
                   history=history, grace_seconds=settings.grace_seconds,
                   queues_interval=settings.queues_interval_seconds,
                   timeline_limit=settings.timeline_limit,
                   live=LiveFeed(supervision), balancing=balancing, **(desks or {}))
    assignment.listen(desks_.on_outcome)
    assignment.listen(supervision.on_outcome)
    keys = load_keys(settings)
    accounts = Accounts(MemoryAccounts(), store, clock, hasher=PasswordHasher(**CHEAP_HASHER))
    server = ConsoleServer(settings, verifier_for(settings, keys), desks_, sessions, history,
                           accounts=accounts)
    await server.start()
    console = Console(settings, store, router, assignment, base.intake, sessions, base.queries,
                      configuration, history, desks_, server,
                      Signer(keys, settings.issuer, settings.audience), supervision, balancing,
                      accounts)
    await to_future(ensureDeferred(configuration.change_queue(
        queue or Queue("support", requirement={"support": 5}))))
    return console
