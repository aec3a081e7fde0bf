"""A small stand-in for dispatcher.service.calls.Calls, for the unit tests of the registrar and
call control (the sipp tests run against the real one): it records every call and answers as
the test says. Deferreds fire at once unless `hold` is set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed

from dispatcher.domain.errors import OfferNotCurrent, UnknownQueue
from dispatcher.service.calls import call_task_id, make_account
from dispatcher.service.ports import Binding


@dataclass
class FakeTask:
    id: str
    attributes: dict


@dataclass
class FakeCalls:
    clock: Any
    realm: str = "switchboard"
    accounts: dict = field(default_factory=dict)  # sip user -> PhoneAccount
    bindings: dict = field(default_factory=dict)  # agent id -> Binding
    log: list = field(default_factory=list)
    queues: set = field(default_factory=lambda: {"support"})
    answer_fails: bool = False
    hold: list | None = None  # when a list: arrived() Deferreds wait in it

    def add(self, agent_id: str, user: str, password: str) -> None:
        self.accounts[user] = make_account(agent_id, user, password, self.realm)

    def account(self, sip_user: str):
        return self.accounts.get(sip_user)

    def binding(self, agent_id: str):
        return self.bindings.get(agent_id)

    def register(self, agent_id, contact, expires_in, source, call_id, cseq) -> Deferred:
        self.log.append(("register", agent_id, contact, expires_in, source))
        b = Binding(agent_id, contact, self.clock.seconds() + expires_in, source, call_id, cseq)
        self.bindings[agent_id] = b
        return succeed(b)

    def unregister(self, agent_id) -> Deferred:
        self.log.append(("unregister", agent_id))
        self.bindings.pop(agent_id, None)
        return succeed(None)

    def arrived(self, call_id, caller, queue, *, source, attributes=None, priority=None):
        self.log.append(("arrived", call_id, caller, queue, source))
        if queue not in self.queues:
            return fail(UnknownQueue(queue))
        task = FakeTask(call_task_id(call_id), {"call_id": call_id, "source": source,
                                                **(attributes or {})})
        if self.hold is not None:
            d: Deferred = Deferred()
            self.hold.append((d, task))
            return d
        return succeed(task)

    def call_id(self, task_id):
        for entry in self.log:
            if entry[0] == "arrived" and call_task_id(entry[1]) == task_id:
                return entry[1]
        return None

    def answered(self, call_id, agent_id):
        self.log.append(("answered", call_id, agent_id))
        if self.answer_fails:
            return fail(OfferNotCurrent("gone"))
        return succeed(FakeTask(call_task_id(call_id), {}))

    def refused(self, call_id, agent_id, reason, busy=False):
        self.log.append(("refused", call_id, agent_id, reason) + (("busy",) if busy else ()))
        return succeed(None)

    def device(self, agent_id, *, engaged=None, reachable=None):
        self.log.append(("device", agent_id, engaged))
        return succeed(None)

    def agent_by_extension(self, extension):
        return None

    def ended(self, call_id, by):
        self.log.append(("ended", call_id, by))
        return succeed(None)

    def abandoned(self, call_id, reason="caller_cancel"):
        self.log.append(("abandoned", call_id, reason))
        return succeed(None)

    def kinds(self) -> list[str]:
        return [e[0] for e in self.log]
