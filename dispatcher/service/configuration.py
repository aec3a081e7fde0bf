"""Configuration: the one service that changes agents, queues, calendars, phones and categories.

Sits in `dispatcher.service`; every caller that changes configuration goes through it: the
command line (actor `operator`, the OS user kept beside it), supervisors on the console
(`supervisor:<id>`), the REST API (`integration:<sub>`...). It promises:

- every rule is checked here, once, before anything is stored (queue names, known queues and
  calendars, deadline rules, SIP-user and extension uniqueness, a category's queue, nothing
  removed or disabled while work waits in it or is held), failing with the domain's errors;
- every change is written through its store with its audit event, in the same transaction
  (queues, agents, calendars: their own kinds; phones and categories: `config.changed`);
- when a router runs in this process (`assignment` given), the change is applied to it at once,
  after the store (store first, then the router, as `Assignment.apply` commits): queues and
  agents into the router, calendars into `Intake.calendars`, phones into `Calls`, categories
  into `Codification`. The open-work rule is then checked against the live router, otherwise
  against the database.

`ConfigurationWatch` carries changes made by another process on the same database (the command
line) to a running server within a few seconds: it reads the configuration events committed
after the last one it read and applies the changed items, read back from the stores; applying
what the router already has changes nothing, so its own changes are harmless to see again. The
log is read under the storage's gap rule (a lower id committing after a higher one is waited
for a few seconds, never skipped).

A queue or an agent removed while a router runs leaves the router too (`Router.remove_queue`,
`Router.remove_agent`); only when work reached it meanwhile (between the check and the router's
turn) does a disabled stand-in serve that work until the next start, as `Assignment.restore`
keeps one for removed items that still hold work.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, check_skills, interruptions
from dispatcher.domain.categories import Category, CategoryRule, check_rule
from dispatcher.domain.deadlines import BusinessCalendar, parse_rule
from dispatcher.domain.errors import DomainError, InUse, InvalidValue, UnknownAgent, UnknownQueue
from dispatcher.domain.queues import AgentChoice, EscalationStep, Mode, Queue, check_queue_name
from dispatcher.domain.requirements import check_attributes
from dispatcher.domain.routing import Outcome, refuse_open_work
from dispatcher.domain.tasks import Channel, Task

from .ports import Calendar, Changes, CodificationStore, PhoneAccount, PhoneStore, Store

if TYPE_CHECKING:
    from .assignment import Assignment
    from .calls import Calls
    from .codification import Codification
    from .intake import Intake

log = logging.getLogger(__name__)

WATCH_SECONDS = 3.0  # how often a server reads the configuration changed by another process
WATCH_BATCH = 500  # events of the agent log read at once
WATCH_ROUNDS = 10  # reads per poll at most (the rest on the next one)

# The events that say the configuration changed (ConfigurationWatch reads them).
CONFIG_KINDS = (ev.QUEUE_CHANGED, ev.QUEUE_REMOVED, ev.AGENT_ADDED, ev.AGENT_CHANGED,
                ev.AGENT_REMOVED, ev.CALENDAR_CHANGED, ev.CONFIG_CHANGED)
PHONE = "phone"
CATEGORY_KINDS = ("category", "category_rule")


class UnknownQueues(UnknownQueue):
    """An agent's change names queues that do not exist (all of them in the message)."""

    def __init__(self, queues: Iterable[str]) -> None:
        names = sorted(queues)
        DomainError.__init__(self, f"unknown queue(s): {', '.join(names)}")
        self.queue, self.queues = names[0], names


def _unknown_queue(name: str, known: Iterable[str]) -> UnknownQueue:
    exc = UnknownQueue(name)
    exc.args = (f"no such queue: {name} (known: {', '.join(sorted(known)) or 'none yet'})",)
    return exc


# ---------------------------------------------------------------------- plain values


def queue_config(queue: Queue) -> dict[str, Any]:
    """A queue's configuration as plain values (audit data, `queues list --json`, the API)."""
    return {"name": queue.name, "requirement": dict(queue.requirement),
            "expression": queue.expression, "mode": queue.mode.value,
            "agent_choice": queue.agent_choice.value, "priority": queue.priority,
            "steps": [{"after_seconds": s.after_seconds, "requirement": dict(s.requirement)}
                      | ({} if s.expression is None else {"expression": s.expression})
                      for s in queue.steps],
            "sl_target": {Channel(c).value: v for c, v in queue.sl_target.items()},
            "sl_share": queue.sl_share,
            "offer_timeout": {Channel(c).value: v for c, v in queue.offer_timeout.items()},
            "wrap_up_seconds": queue.wrap_up_seconds, "deadline_rule": queue.deadline_rule,
            "calendar": queue.calendar,
            "dispositions": [{"code": c, "label": label} for c, label in queue.dispositions],
            "disabled": queue.disabled, "reserve": queue.reserve}


def agent_config(agent: Agent) -> dict[str, Any]:
    return {"id": agent.id, "name": agent.name, "skills": dict(agent.skills),
            "attributes": copy.deepcopy(agent.attributes), "queues": sorted(agent.queues),
            "capacity": {Channel(c).value: n for c, n in agent.capacity.items()},
            "channels": sorted(Channel(c).value for c in agent.channels),
            "disabled": agent.disabled,
            "interruptions": None if agent.interruptions is None
            else agent.interruptions.as_dict()}


def calendar_config(calendar: Calendar) -> dict[str, Any]:
    return {"name": calendar.name, "timezone": calendar.timezone, "hours": calendar.hours,
            "holidays": list(calendar.holidays)}


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any,
           where: str) -> Any:
    value = data.get(name, default)
    if value is default:
        return value
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (
            kind if isinstance(kind, tuple) else (kind,))):
        raise InvalidValue(f"{where}.{name}: unexpected value {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{where}: expected a number, got {value!r}")
    return float(value)


def _channels(value: Any, where: str, kind: Callable[[Any, str], Any]) -> dict[Channel, Any]:
    if not isinstance(value, Mapping):
        raise InvalidValue(f"{where}: expected {{\"phone\": N, \"email\": N}}")
    out = {}
    for name, n in value.items():
        try:
            out[Channel(name)] = kind(n, f"{where}.{name}")
        except ValueError:
            raise InvalidValue(f"{where}: unknown channel {name!r} (email, phone)") from None
    return out


def _levels(value: Any, where: str, allow_drop: bool = False) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidValue(f"{where}: expected {{\"skill\": level}}")
    for k, v in value.items():
        if not (v is None and allow_drop) and (isinstance(v, bool) or not isinstance(v, int)):
            raise InvalidValue(f"{where}.{k}: level must be a whole number 0-10")
    try:
        check_skills({k: v for k, v in value.items() if v is not None})
    except InvalidValue as exc:
        raise InvalidValue(f"{where}: {exc}") from None
    return dict(value)


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{where}: expected a whole number, got {value!r}")
    return value


def _only(data: Any, known: set[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise InvalidValue(f"{where}: expected an object")
    extra = sorted(set(data) - known)
    if extra:
        raise InvalidValue(f"{where}: unknown field(s) {', '.join(map(str, extra))}")


def queue_from_config(data: Mapping[str, Any]) -> Queue:  # noqa: C901 - each queue field in turn
    """The inverse of `queue_config` (missing fields: the defaults); InvalidValue names the
    field that is wrong."""
    where = "queue"
    _only(data, set(queue_config(Queue("x"))), where)
    name = data.get("name")
    if not isinstance(name, str):
        raise InvalidValue("queue.name: required, a string")
    check_queue_name(name)
    kw: dict[str, Any] = {}
    if "requirement" in data:
        kw["requirement"] = _levels(data["requirement"], f"{where}.requirement")
    kw["expression"] = _field(data, "expression", str, "", where) or ""
    if "steps" in data:
        steps = data["steps"]
        if not isinstance(steps, list):
            raise InvalidValue(f"{where}.steps: expected a list")
        out = []
        for i, s in enumerate(steps):
            at = f"{where}.steps[{i}]"
            _only(s, {"after_seconds", "requirement", "expression"}, at)
            out.append(EscalationStep(_number(s.get("after_seconds"), f"{at}.after_seconds"),
                                      _levels(s.get("requirement", {}), f"{at}.requirement",
                                              allow_drop=True),
                                      _field(s, "expression", str, None, at)))
        kw["steps"] = tuple(out)
    for key, kind in (("mode", Mode), ("agent_choice", AgentChoice)):
        if key in data:
            try:
                kw[key] = kind(data[key])
            except ValueError:
                known = ", ".join(m.value for m in kind)
                raise InvalidValue(f"{where}.{key}: {data[key]!r} is not one of {known}") from None
    if "priority" in data:
        kw["priority"] = _whole(data["priority"], f"{where}.priority")
    if "reserve" in data:
        kw["reserve"] = _whole(data["reserve"], f"{where}.reserve")
    for key in ("sl_target", "offer_timeout"):
        if key in data:
            kw[key] = _channels(data[key], f"{where}.{key}", _number)
    if "sl_share" in data:
        kw["sl_share"] = _number(data["sl_share"], f"{where}.sl_share")
    if "wrap_up_seconds" in data:
        kw["wrap_up_seconds"] = _number(data["wrap_up_seconds"], f"{where}.wrap_up_seconds")
    for key in ("calendar", "deadline_rule"):
        kw[key] = _field(data, key, str, None, where) or None
    if "dispositions" in data:
        items = data["dispositions"]
        if not isinstance(items, list):
            raise InvalidValue(f"{where}.dispositions: expected a list")
        pairs = []
        for i, d in enumerate(items):
            _only(d, {"code", "label"}, f"{where}.dispositions[{i}]")
            pairs.append((d.get("code"), d.get("label")))
        kw["dispositions"] = tuple(pairs)
    kw["disabled"] = _field(data, "disabled", bool, False, where)
    try:
        return Queue(name, **kw)
    except (InvalidValue, TypeError) as exc:
        raise InvalidValue(f"{where}: {exc}") from None


def agent_from_config(data: Mapping[str, Any]) -> Agent:
    """The inverse of `agent_config`; InvalidValue names the field that is wrong."""
    where = "agent"
    _only(data, set(agent_config(Agent("x"))), where)
    agent_id = data.get("id")
    if not isinstance(agent_id, str) or not agent_id.strip():
        raise InvalidValue("agent.id: required, a non-empty string")
    kw: dict[str, Any] = {"name": _field(data, "name", str, "", where) or agent_id}
    if "skills" in data:
        kw["skills"] = _levels(data["skills"], f"{where}.skills")
    if "attributes" in data:
        kw["attributes"] = check_attributes(data["attributes"], f"{where}.attributes")
    if data.get("interruptions") is not None:
        kw["interruptions"] = interruptions(data["interruptions"], f"{where}.interruptions")
    if "queues" in data:
        queues = data["queues"]
        if not isinstance(queues, list) or not all(isinstance(q, str) for q in queues):
            raise InvalidValue(f"{where}.queues: expected a list of queue names")
        kw["queues"] = set(queues)
    if "capacity" in data:
        capacity = dict(Agent(agent_id).capacity)
        capacity.update(_channels(data["capacity"], f"{where}.capacity", _whole))
        kw["capacity"] = capacity
    if "channels" in data:
        names = data["channels"]
        if not isinstance(names, list):
            raise InvalidValue(f"{where}.channels: expected a list (email, phone)")
        kw["channels"] = set(_channels({n: 0 for n in names}, f"{where}.channels", _whole))
    kw["disabled"] = _field(data, "disabled", bool, False, where)
    try:
        return Agent(agent_id, **kw)
    except InvalidValue as exc:
        raise InvalidValue(f"{where}: {exc}") from None


def calendar_from_config(data: Mapping[str, Any]) -> Calendar:
    """The inverse of `calendar_config`, checked as the deadlines will read it."""
    where = "calendar"
    _only(data, {"name", "timezone", "hours", "holidays"}, where)
    name, timezone = data.get("name"), data.get("timezone", "UTC")
    if not isinstance(name, str) or not name.strip():
        raise InvalidValue("calendar.name: required, a non-empty string")
    if not isinstance(timezone, str):
        raise InvalidValue("calendar.timezone: expected a time zone name, e.g. Europe/Paris")
    holidays = data.get("holidays", [])
    if not isinstance(holidays, list) or not all(isinstance(h, str) for h in holidays):
        raise InvalidValue("calendar.holidays: expected a list of ISO dates")
    calendar = Calendar(name, timezone, data.get("hours", {}), tuple(holidays))
    check_calendar(calendar)
    return calendar


def check_calendar(calendar: Calendar) -> BusinessCalendar:
    return BusinessCalendar.from_spec(calendar.name, calendar.timezone, calendar.hours,
                                      calendar.holidays)


def _same_agent(a: Agent, b: Agent) -> bool:
    return agent_config(a) == agent_config(b)


def _without_audit(outcome: Outcome, kind: str, agent_id: str | None = None,
                   queue: str | None = None) -> Outcome:
    """The router's own event of a configuration change (`agent.changed`, `agent.removed`,
    `queue.removed`): already audited, with the store's write."""
    outcome.events[:] = [e for e in outcome.events if not (
        e.kind == kind and (e.agent_id == agent_id if queue is None
                            else e.data.get("queue") == queue))]
    return outcome


# ---------------------------------------------------------------------- the service


class Configuration:
    """Every configuration change, validated once, stored with its audit, applied live.

    `store`: queues, agents, calendars (and open work, for the rule when no router runs here);
    `phones`, `codes`: phone accounts and categories (None: not configurable through this
    instance). Live targets, all optional: `assignment` (the router), `intake` (calendars),
    `calls` (the phone directory), `codification` (categories and rules).

    Phones: `phones()`, `put_phone(account, actor, user)`, `remove_phone(agent_id, actor,
    user)`. Categories: `categories()`, `put_category(category, actor, user)`, `rules()`,
    `add_rule(rule, actor, user) -> id`, `remove_rule(rule_id, actor, user) -> bool`.
    """

    def __init__(self, store: Store, clock: IReactorTime, *, phones: PhoneStore | None = None,
                 codes: CodificationStore | None = None, assignment: Assignment | None = None,
                 intake: Intake | None = None, calls: Calls | None = None,
                 codification: Codification | None = None) -> None:
        self.store, self.clock = store, clock
        self.phones_store, self.codes = phones, codes
        self.assignment, self.intake = assignment, intake
        self.calls, self.codification = calls, codification

    def reload_categories_with(self, codification: Codification) -> None:
        """Categories changed here are reloaded into `codification` (wired by the composition
        root once both exist: Codification makes its spam queue through this service)."""
        self.codification = codification

    @property
    def live(self) -> bool:
        """A router runs in this process: changes apply to it at once."""
        return self.assignment is not None

    def _event(self, kind: str, agent_id: str | None, data: dict[str, Any], actor: str,
               user: str | None) -> ev.Event:
        if user:
            data = {**data, "user": user}
        return ev.Event(kind, self.clock.seconds(), None, agent_id or actor, actor, data)

    def audit(self, what: str, action: str, subject: str | None = None, *,
              actor: str = ev.OPERATOR, user: str | None = None,
              **details: Any) -> Deferred[None]:
        """Audit a configuration change made outside this service (response modes, imports),
        once it is done: `config.changed` in the agent log, under `subject` (an agent's id) or
        the actor. Never pass a secret in `details`."""
        return self.store.record(Changes(events=[self._changed(what, action, subject, actor,
                                                               user, **details)]))

    def _changed(self, what: str, action: str, subject: str | None, actor: str,
                 user: str | None, **details: Any) -> ev.Event:
        """The `config.changed` event of a phone's or a category's change (written with it)."""
        return self._event(ev.CONFIG_CHANGED, subject, {"what": what, "action": action,
                                                        **details}, actor, user)

    # ------------------------------------------------------------------ queues

    async def queues(self) -> list[Queue]:
        return await self.store.list_queues()

    async def queue(self, name: str) -> Queue:
        found = {q.name: q for q in await self.store.list_queues()}
        if name not in found:
            raise _unknown_queue(name, found)
        return found[name]

    async def put_queue(self, queue: Queue, actor: str, user: str | None = None) -> bool:
        """Add or update a queue; True when it is new. Its calendar must exist and its deadline
        rule parse. An update never enables a disabled queue (`set_queue_disabled` does);
        disabling through it follows the open-work rule."""
        added, _ = await self._put_queue(queue, actor, user)
        return added

    async def change_queue(self, queue: Queue, actor: str = ev.SYSTEM,
                           user: str | None = None) -> Outcome:
        """`put_queue`, returning what the router did at once (offers of waiting tasks)."""
        _, outcome = await self._put_queue(queue, actor, user)
        return outcome

    async def _put_queue(self, queue: Queue, actor: str, user: str | None
                         ) -> tuple[bool, Outcome]:
        check_queue_name(queue.name)
        if queue.deadline_rule:
            parse_rule(queue.deadline_rule)
        if queue.calendar:
            known = {c.name for c in await self.store.list_calendars()}
            if queue.calendar not in known:
                raise InvalidValue(
                    f"unknown calendar {queue.calendar!r}: add it first with `switchboard "
                    f"calendars add` (known: {', '.join(sorted(known)) or 'none yet'})")
        old = await self._current_queue(queue.name)
        was_disabled = old is not None and old.disabled
        if queue.disabled and not was_disabled:
            await self._refuse_open(queue=queue.name)
        queue.disabled = queue.disabled or was_disabled
        await self.store.put_queue(queue, [self._event(
            ev.QUEUE_CHANGED, None, {"queue": queue.name, "added": old is None,
                                     "config": queue_config(queue)}, actor, user)])
        return old is None, await self._route_queue(queue)

    async def remove_queue(self, name: str, actor: str, user: str | None = None) -> list[str]:
        """Remove a queue with no open work; the agents it was dropped from."""
        await self.queue(name)
        await self._refuse_open(queue=name)
        members = sorted(a.id for a in await self.store.list_agents() if name in a.queues)
        if not await self.store.remove_queue(name, [self._event(
                ev.QUEUE_REMOVED, None, {"queue": name, "members": members}, actor, user)]):
            raise UnknownQueue(name)
        await self._unroute_queue(name)
        return members

    async def set_queue_disabled(self, name: str, disabled: bool, actor: str,
                                 user: str | None = None) -> Queue:
        queue = await self.queue(name)
        if disabled:
            await self._refuse_open(queue=name)
        queue.disabled = disabled
        await self.store.put_queue(queue, [self._event(
            ev.QUEUE_CHANGED, None, {"queue": name, "added": False, "disabled": disabled},
            actor, user)])
        await self._route_queue(queue)
        return queue

    # ------------------------------------------------------------------ agents

    async def agents(self) -> list[Agent]:
        return await self.store.list_agents()

    async def agent(self, agent_id: str) -> Agent:
        found = {a.id: a for a in await self.store.list_agents()}
        if agent_id not in found:
            raise UnknownAgent(agent_id)
        return found[agent_id]

    async def put_agent(self, agent: Agent, actor: str, user: str | None = None) -> bool:
        """Add or update an agent; their queues must exist. True when the agent is new. An
        update never enables a disabled agent (`set_agent_disabled` does); disabling through
        it follows the open-work rule."""
        added, _ = await self._put_agent(agent, actor, user)
        return added

    async def change_agent(self, agent: Agent, actor: str = ev.SYSTEM,
                           user: str | None = None) -> Outcome:
        """`put_agent`, returning what the router did at once (offers the agent now gets)."""
        _, outcome = await self._put_agent(agent, actor, user)
        return outcome

    async def _put_agent(self, agent: Agent, actor: str, user: str | None
                         ) -> tuple[bool, Outcome]:
        unknown = agent.queues - await self._queue_names()
        if unknown:
            raise UnknownQueues(unknown)
        old = await self._current_agent(agent.id)
        was_disabled = old is not None and old.disabled
        if agent.disabled and not was_disabled:
            await self._refuse_open(agent_id=agent.id)
        agent.disabled = agent.disabled or was_disabled
        kind = ev.AGENT_ADDED if old is None else ev.AGENT_CHANGED
        await self.store.put_agent(agent, [self._event(kind, agent.id, agent_config(agent),
                                                       actor, user)])
        return old is None, await self._route_agent(agent)

    async def set_skills(self, agent_id: str, skills: dict[str, int], actor: str,
                         user: str | None = None) -> Agent:
        agent = await self.agent(agent_id)
        agent.skills = check_skills(skills)
        await self.store.put_agent(agent, [self._event(
            ev.AGENT_CHANGED, agent.id, {"skills": dict(agent.skills),
                                         "queues": sorted(agent.queues)}, actor, user)])
        await self._route_agent(agent)
        return agent

    async def remove_agent(self, agent_id: str, actor: str, user: str | None = None) -> None:
        await self.agent(agent_id)
        await self._refuse_open(agent_id=agent_id)
        if not await self.store.remove_agent(agent_id, [self._event(
                ev.AGENT_REMOVED, agent_id, {"id": agent_id}, actor, user)]):
            raise UnknownAgent(agent_id)
        await self._unroute_agent(agent_id)

    async def set_agent_disabled(self, agent_id: str, disabled: bool, actor: str,
                                 user: str | None = None) -> Agent:
        agent = await self.agent(agent_id)
        if disabled:
            await self._refuse_open(agent_id=agent_id)
        agent.disabled = disabled
        await self.store.put_agent(agent, [self._event(
            ev.AGENT_CHANGED, agent_id, {"disabled": disabled}, actor, user)])
        await self._route_agent(agent)
        return agent

    # ------------------------------------------------------------------ calendars

    async def calendars(self) -> list[Calendar]:
        return await self.store.list_calendars()

    async def put_calendar(self, calendar: Calendar, actor: str, user: str | None = None
                           ) -> None:
        business = check_calendar(calendar)
        await self.store.put_calendar(calendar, [self._event(
            ev.CALENDAR_CHANGED, None, {"calendar": calendar.name, "timezone": calendar.timezone,
                                        "hours": calendar.hours,
                                        "holidays": list(calendar.holidays)}, actor, user)])
        if self.intake is not None:
            self.intake.calendars[calendar.name] = business

    # ------------------------------------------------------------------ phones

    def _phone_store(self) -> PhoneStore:
        if self.phones_store is None:
            raise InvalidValue("phones are not configurable here")
        return self.phones_store

    async def phones(self) -> list[PhoneAccount]:
        return await self._phone_store().list_phone_accounts()

    async def put_phone(self, account: PhoneAccount, actor: str, user: str | None = None
                        ) -> None:
        """Give a known agent a phone account (`calls.make_account` builds it from a
        password); its SIP user and extension must be nobody else's."""
        phones = self._phone_store()
        await self.agent(account.agent_id)
        for other in await phones.list_phone_accounts():
            if other.agent_id == account.agent_id:
                continue
            if account.sip_user is not None and other.sip_user == account.sip_user:
                raise InvalidValue(f"SIP user {account.sip_user} belongs to {other.agent_id}")
            if account.extension is not None and other.extension == account.extension:
                raise InvalidValue(f"extension {account.extension} belongs to {other.agent_id}")
        await phones.put_phone_account(account, [self._changed(
            PHONE, "set", account.agent_id, actor, user, sip_user=account.sip_user,
            realm=account.realm, extension=account.extension,
            password="set" if account.ha1_md5 is not None else "none")])
        await self._route_phones()

    async def remove_phone(self, agent_id: str, actor: str, user: str | None = None) -> None:
        if not await self._phone_store().remove_phone_account(agent_id, [self._changed(
                PHONE, "removed", agent_id, actor, user)]):
            raise InvalidValue(f"{agent_id} has no phone account")
        await self._route_phones()

    # ------------------------------------------------------------------ categories

    def _codes(self) -> CodificationStore:
        if self.codes is None:
            raise InvalidValue("categories are not configurable here")
        return self.codes

    async def categories(self) -> list[Category]:
        return await self._codes().list_categories()

    async def rules(self) -> list[CategoryRule]:
        return await self._codes().list_rules()

    async def put_category(self, category: Category, actor: str, user: str | None = None
                           ) -> None:
        """Add or replace a category; the queue it sends tasks to must exist."""
        codes = self._codes()
        if category.queue is not None:
            await self.queue(category.queue)
        await codes.put_category(category, [self._changed(
            "category", "set", None, actor, user, category=category.name, queue=category.queue,
            priority=category.priority, skills=dict(category.skills),
            attributes=dict(category.attributes))])
        await self._route_categories()

    async def add_rule(self, rule: CategoryRule, actor: str, user: str | None = None) -> int:
        rule = check_rule(rule)
        rule_id = await self._codes().add_rule(rule, [self._changed(  # the store adds `rule`
            "category_rule", "added", None, actor, user, category=rule.category,
            field=rule.field, pattern=rule.pattern, match=rule.match, position=rule.position,
            enabled=rule.enabled)])
        await self._route_categories()
        return rule_id

    async def remove_rule(self, rule_id: int, actor: str, user: str | None = None) -> bool:
        """False (nothing written) when there is no such rule."""
        if not await self._codes().remove_rule(rule_id, [self._changed(
                "category_rule", "removed", None, actor, user, rule=rule_id)]):
            return False
        await self._route_categories()
        return True

    # ------------------------------------------------------------------ the rule

    # The configuration as it stands: a live router holds every stored queue and agent (loaded
    # at start, kept in step by every change and by the watch), so a change made while it runs
    # (a supervisor's rebalance) reads no table; without one, the database answers.

    async def _queue_names(self) -> set[str]:
        if self.assignment is not None:
            return set(self.assignment.router.queues)
        return {q.name for q in await self.store.list_queues()}

    async def _current_queue(self, name: str) -> Queue | None:
        if self.assignment is not None:
            return self.assignment.router.queues.get(name)
        return {q.name: q for q in await self.store.list_queues()}.get(name)

    async def _current_agent(self, agent_id: str) -> Agent | None:
        if self.assignment is not None:
            return self.assignment.router.agents.get(agent_id)
        return {a.id: a for a in await self.store.list_agents()}.get(agent_id)

    async def _refuse_open(self, queue: str | None = None, agent_id: str | None = None
                           ) -> None:
        """The domain's open-work rule (`refuse_open_work`, InUse) checked before anything is
        stored, on the live router's open tasks (the database's when no router runs here)."""
        if self.assignment is not None:
            tasks: Iterable[Task] = self.assignment.router.tasks.values()
        else:
            tasks = (await self.store.load_state()).open_tasks
        refuse_open_work(tasks, queue=queue, agent_id=agent_id)

    # ------------------------------------------------------------------ applying live

    async def _route_queue(self, queue: Queue) -> Outcome:
        if self.assignment is None:
            return Outcome()
        router = self.assignment.router
        current = router.queues.get(queue.name)
        if current is not None and queue_config(current) == queue_config(queue):
            return Outcome()
        return await self.assignment.apply(router.put_queue(queue, self.assignment.now()))

    async def _unroute_queue(self, name: str) -> None:
        """Remove the queue from the router; work that reached it meanwhile keeps it, disabled
        (a stand-in serving that work until the next start)."""
        if self.assignment is None or name not in self.assignment.router.queues:
            return
        router = self.assignment.router
        try:
            outcome = router.remove_queue(name, self.assignment.now())
        except InUse as exc:
            log.warning("configuration: queue %s removed but still in use here, disabled "
                        "until the next start: %s", name, exc)
            current = router.queues[name]
            if not current.disabled:
                await self._route_queue(replace(current, disabled=True))
            return
        await self.assignment.apply(_without_audit(outcome, ev.QUEUE_REMOVED, queue=name))

    async def _route_agent(self, agent: Agent) -> Outcome:
        if self.assignment is None:
            return Outcome()
        router, now = self.assignment.router, self.assignment.now()
        current = router.agents.get(agent.id)
        if current is not None and _same_agent(current, agent):
            return Outcome()
        outcome = router.put_agent(agent, now)
        return await self.assignment.apply(_without_audit(outcome, ev.AGENT_CHANGED, agent.id))

    async def _unroute_agent(self, agent_id: str) -> None:
        """Remove the agent from the router (signed in: offline first); one who took work
        meanwhile stays, disabled, until the next start."""
        if self.assignment is None or agent_id not in self.assignment.router.agents:
            return
        router = self.assignment.router
        try:
            outcome = router.remove_agent(agent_id, self.assignment.now())
        except InUse as exc:
            log.warning("configuration: agent %s removed but still holds work here, disabled "
                        "until the next start: %s", agent_id, exc)
            await self._route_agent(replace(router.agents[agent_id], disabled=True))
            return
        await self.assignment.apply(_without_audit(outcome, ev.AGENT_REMOVED, agent_id))

    async def _route_calendars(self) -> None:
        if self.intake is None:
            return
        for calendar in await self.store.list_calendars():
            try:
                self.intake.calendars[calendar.name] = check_calendar(calendar)
            except InvalidValue as exc:  # stored by an older version: keep the one we have
                log.warning("calendar %s not applied: %s", calendar.name, exc)

    async def _route_phones(self) -> None:
        if self.calls is not None and self.phones_store is not None:
            self.calls.reload_accounts(await self.phones_store.list_phone_accounts())

    async def _route_categories(self) -> None:
        if self.codification is not None:
            await self.codification.refresh()

    async def apply_stored(self, queues: Iterable[str] = (), agents: Iterable[str] = (),
                           calendars: bool = False, phones: bool = False,
                           categories: bool = False) -> None:
        """Apply what the stores now hold for these items to the live router and services
        (changes another process made); what the router already has is left alone."""
        queues, agents = set(queues), set(agents)
        if calendars:
            await self._route_calendars()
        if queues or agents:
            stored = {q.name: q for q in await self.store.list_queues()}
            stored_agents = {a.id: a for a in await self.store.list_agents()}
            router = self.assignment.router if self.assignment is not None else None
            for agent_id in agents & stored_agents.keys():  # their queues first
                queues |= {q for q in stored_agents[agent_id].queues
                           if router is not None and q not in router.queues}
            steps: list[tuple[str, Callable[[], Any]]] = []
            steps += [(f"queue {n}", lambda q=stored[n]: self._route_queue(q))
                      for n in sorted(queues & stored.keys())]
            steps += [(f"agent {a}", lambda x=stored_agents[a]: self._route_agent(x))
                      for a in sorted(agents & stored_agents.keys())]
            steps += [(f"agent {a}", lambda a=a: self._unroute_agent(a))
                      for a in sorted(agents - stored_agents.keys())]
            steps += [(f"queue {n}", lambda n=n: self._unroute_queue(n))
                      for n in sorted(queues - stored.keys())]
            for what, step in steps:
                try:
                    await step()
                except DomainError as exc:  # one bad item must not hold back the others
                    log.warning("configuration: %s not applied: %s", what, exc)
        if phones:
            await self._route_phones()
        if categories:
            await self._route_categories()


# ---------------------------------------------------------------------- the watch


class LogRead(Protocol):
    changes: list[tuple[int, str, str | None, dict[str, Any]]]
    cursor: int
    more: bool


class ConfigurationLog(Protocol):
    """The configuration events committed so far, by log id (dispatcher.storage.
    configuration)."""

    def last_id(self) -> Deferred[int]:
        """The id of the newest event of the agent log (0: none)."""

    def changes_after(self, after_id: int, kinds: Sequence[str], limit: int, now: float
                      ) -> Deferred[LogRead]:
        """Of the (at most `limit`) events after `after_id` that may be read at `now` (held
        back at a missing id until a later one is a few seconds old: it may commit late),
        `changes`: (id, kind, agent_id, data) of those of these kinds, in id order; `cursor`:
        the id to read after next time; `more`: whether more were waiting."""


class ConfigurationWatch:
    """Applies the configuration changed by another process: `start` notes the newest event
    (call it before the router is rebuilt from the database), then every `interval` seconds the
    events committed since are read and their items applied from the stores. A failed read is
    logged and tried again on the next poll; an item the router refuses is logged and skipped."""

    def __init__(self, log_: ConfigurationLog, configuration: Configuration, clock: Any,
                 interval: float = WATCH_SECONDS) -> None:
        self.log, self.configuration, self.clock, self.interval = (log_, configuration, clock,
                                                                    interval)
        self.seen = 0
        self._poll: LoopingCall | None = None

    def mark(self) -> Deferred[None]:
        """Note the newest event: changes up to it are in what the router loads next."""
        d = self.log.last_id()
        d.addCallback(lambda last: setattr(self, "seen", last))
        return d

    def start(self) -> None:
        self._poll = LoopingCall(self._refresh)
        self._poll.clock = self.clock
        self._poll.start(self.interval, now=False)

    def stop(self) -> None:
        if self._poll is not None and self._poll.running:
            self._poll.stop()

    def _refresh(self) -> Deferred[None]:
        d = self.poll()
        d.addErrback(lambda f: log.warning("configuration: changes not applied yet: %s",
                                           f.getErrorMessage()[:200]))
        return d

    def poll(self) -> Deferred[None]:
        return ensureDeferred(self._apply_new())

    async def _apply_new(self) -> None:
        for _ in range(WATCH_ROUNDS):
            read = await self.log.changes_after(self.seen, CONFIG_KINDS, WATCH_BATCH,
                                                self.clock.seconds())
            if read.changes:
                await self._apply(read.changes)
            self.seen = read.cursor
            if not read.more:
                return

    async def _apply(self, rows: Sequence[tuple[int, str, str | None, dict[str, Any]]]
                     ) -> None:
        queues: set[str] = set()
        agents: set[str] = set()
        flags = {"calendars": False, "phones": False, "categories": False}
        for _, kind, agent_id, data in rows:
            if kind in (ev.QUEUE_CHANGED, ev.QUEUE_REMOVED):
                queues.add(str(data.get("queue")))
                agents.update(str(m) for m in data.get("members", ()))
            elif kind in (ev.AGENT_ADDED, ev.AGENT_CHANGED, ev.AGENT_REMOVED):
                if agent_id:
                    agents.add(agent_id)
            elif kind == ev.CALENDAR_CHANGED:
                flags["calendars"] = True
            elif data.get("what") == PHONE:
                flags["phones"] = True
            elif data.get("what") in CATEGORY_KINDS:
                flags["categories"] = True
        await self.configuration.apply_stored(queues, agents, **flags)
