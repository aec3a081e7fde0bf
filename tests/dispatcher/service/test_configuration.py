"""Configuration: every rule for changing agents, queues, calendars, phones and categories,
checked once before anything is stored; each change audited; applied live to a router running
here; and the watch that carries another process's changes (the CLI) to a running server."""

from __future__ import annotations

from dataclasses import replace

import pytest
from twisted.internet.defer import ensureDeferred, succeed

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.categories import Category, CategoryRule
from dispatcher.domain.errors import InUse, InvalidValue, UnknownAgent, UnknownQueue
from dispatcher.domain.queues import EscalationStep, Mode, Queue
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.calls import Calls, make_account
from dispatcher.service.configuration import (
    Configuration,
    ConfigurationWatch,
    UnknownQueues,
    agent_config,
    agent_from_config,
    calendar_config,
    calendar_from_config,
    queue_config,
    queue_from_config,
)
from dispatcher.service.ports import Calendar, Changes
from dispatcher.storage.configuration import MemoryConfigurationLog
from dispatcher.storage.phones import MemoryPhones
from tests.dispatcher.service.stacks import build_stack, failure_of, result, support_queue

OP = ev.OPERATOR
OFFICE = Calendar("office", "Europe/Paris", {"mon": [["09:00", "17:00"]]}, ("2026-12-25",))


def run(coro):
    return result(ensureDeferred(coro))


def refused(coro):
    return failure_of(ensureDeferred(coro))


class Codes:
    """A CodificationStore with what Configuration uses, and a Codification stand-in that
    counts its refreshes."""

    def __init__(self, store=None) -> None:
        self.categories, self.rules_, self.refreshed = {}, {}, 0
        self.store = store  # whose agent log takes the audit events, as the real stores do

    def _log(self, events):
        if events:
            self.store.record(Changes(events=list(events)))

    def put_category(self, category, events=()):
        self.categories[category.name] = category
        self._log(events)
        return succeed(None)

    def list_categories(self):
        return succeed(list(self.categories.values()))

    def add_rule(self, rule, events=()):
        rule_id = len(self.rules_) + 1
        self.rules_[rule_id] = rule
        self._log([replace(e, data={**e.data, "rule": rule_id}) for e in events])
        return succeed(rule_id)

    def remove_rule(self, rule_id, events=()):
        if self.rules_.pop(rule_id, None) is None:
            return succeed(False)
        self._log(events)
        return succeed(True)

    def list_rules(self):
        return succeed(list(self.rules_.values()))

    def refresh(self):
        self.refreshed += 1
        return succeed(None)


def offline(s, codes=None, phones=None) -> Configuration:
    """The command line's configuration: the database alone, no router in its process."""
    return Configuration(s.store, s.clock, phones=phones, codes=codes)


def live(s, codes=None, phones=None, calls=None) -> Configuration:
    return Configuration(s.store, s.clock, phones=phones, codes=codes, assignment=s.assignment,
                         intake=s.intake, calls=calls, codification=codes)


def audit(s, actor=OP):
    return [(e.kind, e.agent_id, dict(e.data)) for e in s.store.agent_events if e.actor == actor]


# ---------------------------------------------------------------------- rules, before storing


def test_an_agent_in_unknown_queues_is_refused_naming_them_all(stack):
    conf = offline(stack)
    f = refused(conf.put_agent(Agent("ann", queues={"support", "x", "y"}), OP))
    assert f.check(UnknownQueues, UnknownQueue) and "unknown queue(s): x, y" in str(f.value)
    assert result(stack.store.list_agents()) == []


def test_a_queue_needs_a_known_calendar_a_valid_deadline_rule_and_a_good_name(stack):
    conf = offline(stack)
    f = refused(conf.put_queue(Queue("sales", calendar="office"), OP))
    assert f.check(InvalidValue) and "unknown calendar 'office'" in str(f.value)
    assert refused(conf.put_queue(Queue("sales", deadline_rule="whenever"), OP)).check(
        InvalidValue)
    assert refused(conf.put_queue(Queue("bad name!"), OP)).check(InvalidValue)
    assert [q.name for q in result(stack.store.list_queues())] == ["support"]
    run(conf.put_calendar(OFFICE, OP))
    assert run(conf.put_queue(Queue("sales", calendar="office",
                                     deadline_rule="sliding 8h"), OP)) is True


def test_a_calendar_that_never_opens_is_refused(stack):
    f = refused(offline(stack).put_calendar(Calendar("x", "UTC", {}, ()), OP))
    assert f.check(InvalidValue) and "never opens" in str(f.value)
    assert result(stack.store.list_calendars()) == []


def test_unknown_queue_shows_the_known_ones(stack):
    f = refused(offline(stack).queue("nosuch"))
    assert f.check(UnknownQueue) and "no such queue: nosuch (known: support)" in str(f.value)
    assert refused(offline(stack).agent("nobody")).check(UnknownAgent)


def test_an_update_never_enables_and_disabling_follows_the_open_work_rule(stack):
    conf = offline(stack)
    run(conf.set_queue_disabled("support", True, OP))
    run(conf.put_queue(support_queue(priority=4), OP))  # an update: stays disabled
    assert result(stack.store.list_queues())[0].disabled
    run(conf.set_queue_disabled("support", False, OP))
    stack.call()  # waits: nobody is there
    f = refused(conf.put_queue(support_queue(disabled=True), OP))
    assert f.check(InUse) and "queue support has 1 open task(s)" in str(f.value)


def test_every_change_is_audited_with_actor_and_user_in_the_same_write(stack):
    conf = offline(stack)
    run(conf.put_queue(Queue("sales"), OP, "ops"))
    run(conf.put_agent(Agent("ann", queues={"sales"}), "supervisor:sue"))
    run(conf.remove_queue("sales", OP, "ops"))
    got = audit(stack)
    assert [(k, who) for k, who, _ in got] == [(ev.QUEUE_CHANGED, OP), (ev.QUEUE_REMOVED, OP)]
    assert got[0][2]["config"] == queue_config(Queue("sales")) | {"disabled": False}
    assert got[1][2] == {"queue": "sales", "members": ["ann"], "user": "ops"}
    (added,) = audit(stack, "supervisor:sue")
    assert added[0] == ev.AGENT_ADDED and "user" not in added[2]


# ---------------------------------------------------------------------- applied live


def test_a_live_change_reaches_the_router_at_once_and_is_audited_once(stack):
    conf = live(stack)
    run(conf.put_agent(Agent("ann", skills={"support": 8}, queues={"support"}), "supervisor:s"))
    stack.login("ann")
    task = stack.call()
    assert stack.last_offer("ann").task_id == task.id
    stack.wait(stack.sessions.reject("ann", stack.last_offer("ann").id))
    run(conf.put_agent(Agent("ann", skills={"support": 9}, queues={"support"}), "supervisor:s"))
    assert stack.router.agents["ann"].skills == {"support": 9}
    changed = [e for e in stack.store.agent_events if e.kind == ev.AGENT_CHANGED]
    assert [(e.actor, e.data["skills"]) for e in changed] == [("supervisor:s", {"support": 9})]


def test_open_work_is_checked_against_the_live_router(stack):
    conf = live(stack)
    stack.put_agent("ann", 8)
    task = stack.call()
    stack.store._tasks.pop(task.id)  # the database no longer sees it: the router still does
    f = refused(conf.remove_queue("support", OP))
    assert f.check(InUse) and task.id in str(f.value)


def test_disabling_an_available_agent_live_puts_them_offline_and_keeps_them_there(stack):
    conf = live(stack)
    stack.put_agent("ann", 8)
    stack.login("ann")
    run(conf.set_agent_disabled("ann", True, OP))
    agent = stack.router.agents["ann"]
    assert agent.disabled and agent.status is Presence.OFFLINE
    assert failure_of(stack.sessions.login("ann")).value.code == "agent_disabled"
    run(conf.set_agent_disabled("ann", False, OP))
    stack.login("ann")
    assert stack.router.agents["ann"].status is Presence.AVAILABLE


def test_removing_live_drops_the_queue_and_the_agent_from_the_router(stack):
    conf = live(stack)
    run(conf.put_queue(Queue("sales"), OP))
    stack.put_agent("ann", 8, queues=("support", "sales"))
    stack.login("ann")
    assert run(conf.remove_queue("sales", OP)) == ["ann"]
    assert stack.router.agents["ann"].queues == {"support"}
    assert "sales" not in stack.router.queues
    assert failure_of(stack.intake.submit(Channel.PHONE, "sales")).check(UnknownQueue)
    run(conf.remove_agent("ann", OP))
    assert "ann" not in stack.router.agents and stack.router.members("support") == set()
    task = stack.call()
    assert stack.router.tasks[task.id].state is TaskState.QUEUED  # nobody left to take it
    kinds = [k for k, _, _ in audit(stack)]
    assert kinds.count(ev.QUEUE_REMOVED) == 1 and kinds.count(ev.AGENT_REMOVED) == 1
    logged = [e.kind for e in stack.store.agent_events]
    assert logged.count(ev.QUEUE_REMOVED) == 1 and logged.count(ev.AGENT_REMOVED) == 1
    assert "offline" in [e.data.get("status") for e in stack.store.agent_events
                         if e.agent_id == "ann" and e.kind == ev.AGENT_STATUS]


def test_work_that_reaches_a_queue_while_it_is_removed_keeps_a_disabled_stand_in(stack):
    """Another process removed the queue (its check saw no work); a call came in here before
    the watch applied it: the router keeps the queue, disabled, for that call."""
    conf = live(stack)
    run(conf.put_queue(Queue("sales"), OP))
    stack.put_agent("ann", 8, queues=("support", "sales"))
    task = stack.call("sales")
    assert stack.wait(stack.store.remove_queue("sales", []))  # its check passed before the call
    run(conf.apply_stored(queues={"sales"}, agents={"ann"}))
    assert stack.router.queues["sales"].disabled and task.id in stack.router.tasks
    assert stack.router.agents["ann"].queues == {"support"}


def test_a_calendar_reaches_intake_and_deadlines_use_it(stack):
    conf = live(stack)
    run(conf.put_calendar(OFFICE, OP))
    assert "office" in stack.intake.calendars
    run(conf.put_queue(support_queue(calendar="office", deadline_rule="sliding 2h"), OP))
    task = stack.wait(stack.intake.submit(Channel.EMAIL, "support"))
    assert task.deadline is not None


def test_phones_unique_sip_users_and_extensions_known_agents_and_live_directory(stack):
    phones = MemoryPhones(stack.store)
    calls = Calls(stack.assignment, stack.intake, phones)
    conf = live(stack, phones=phones, calls=calls)
    stack.put_agent("ann", 8)
    stack.put_agent("bob", 8)
    run(conf.put_phone(make_account("ann", "ann", "pw", extension="1001"), OP))
    assert calls.account("ann").agent_id == "ann"
    f = refused(conf.put_phone(make_account("bob", "ann", "pw"), OP))
    assert f.check(InvalidValue) and "SIP user ann belongs to ann" in str(f.value)
    f = refused(conf.put_phone(make_account("bob", None, None, extension="1001"), OP))
    assert "extension 1001 belongs to ann" in str(f.value)
    assert refused(conf.put_phone(make_account("carl", "c", "pw"), OP)).check(UnknownAgent)
    run(conf.remove_phone("ann", OP))
    assert calls.account("ann") is None
    assert "has no phone account" in str(refused(conf.remove_phone("ann", OP)).value)
    phone_audit = [d for k, _, d in audit(stack) if k == ev.CONFIG_CHANGED]
    assert [(d["what"], d["action"], d.get("password")) for d in phone_audit] == [
        ("phone", "set", "set"), ("phone", "removed", None)]
    assert not any("ha1" in str(d) for d in phone_audit)


def test_categories_need_a_known_queue_rules_are_checked_and_codification_reloads(stack):
    codes = Codes(stack.store)
    conf = live(stack, codes=codes)
    f = refused(conf.put_category(Category("refund", queue="nosuch"), OP))
    assert f.check(UnknownQueue) and codes.categories == {}
    run(conf.put_category(Category("refund", queue="support"), OP))
    bad = CategoryRule("refund", "nowhere", "x", "regex", 1, True)
    assert refused(conf.add_rule(bad, OP)).check(InvalidValue)
    rule_id = run(conf.add_rule(CategoryRule("refund", "subject", "refund", "regex", 1, True),
                                OP))
    assert run(conf.remove_rule(rule_id, OP)) is True
    assert run(conf.remove_rule(rule_id, OP)) is False
    assert codes.refreshed == 3  # category, rule added, rule removed
    changed = [(d["what"], d["action"], d.get("rule")) for k, _, d in audit(stack)
               if k == ev.CONFIG_CHANGED]
    assert changed == [("category", "set", None), ("category_rule", "added", rule_id),
                       ("category_rule", "removed", rule_id)]  # written with each change


# ---------------------------------------------------------------------- plain values


def test_configs_round_trip_and_a_bad_field_is_named():
    queue = Queue("sales", requirement={"fr": 3}, steps=(EscalationStep(60, {"fr": None}),),
                  mode=Mode.PULL, priority=2, sl_target={Channel.PHONE: 30.0},
                  offer_timeout={Channel.EMAIL: 90.0}, wrap_up_seconds=15.0,
                  deadline_rule="sliding 24h", dispositions=(("ok", "Solved"),))
    assert queue_config(queue_from_config(queue_config(queue))) == queue_config(queue)
    agent = Agent("ann", "Ann", {"fr": 4}, {"sales"}, {Channel.PHONE: 1, Channel.EMAIL: 2},
                  {Channel.EMAIL})
    assert agent_config(agent_from_config(agent_config(agent))) == agent_config(agent)
    assert calendar_from_config(calendar_config(OFFICE)) == OFFICE
    for bad, field in (({"name": "q", "priority": "high"}, "queue.priority"),
                       ({"name": "q", "mode": "shout"}, "queue.mode"),
                       ({"name": "q", "steps": [{"after_seconds": "x"}]}, "steps[0]"),
                       ({"name": "q", "colour": 1}, "colour")):
        with pytest.raises(InvalidValue, match=field.replace("[", r"\[").replace("]", r"\]")):
            queue_from_config(bad)
    with pytest.raises(InvalidValue, match=r"agent\.skills"):
        agent_from_config({"id": "a", "skills": {"fr": 11}})
    with pytest.raises(InvalidValue, match=r"agent\.capacity"):
        agent_from_config({"id": "a", "capacity": {"fax": 1}})
    with pytest.raises(InvalidValue, match="calendar"):
        calendar_from_config({"name": "c", "timezone": "UTC", "hours": {"funday": []}})


# ---------------------------------------------------------------------- the watch


def test_the_cli_s_changes_reach_a_running_server_within_a_poll():
    s = build_stack()
    server = live(s)
    watch = ConfigurationWatch(MemoryConfigurationLog(s.store), server, s.clock, interval=3)
    result(watch.mark())
    watch.start()
    cli = offline(s)  # another process on the same database
    run(cli.put_calendar(OFFICE, OP))
    run(cli.put_queue(Queue("sales", requirement={"fr": 3}, calendar="office"), OP))
    run(cli.put_agent(Agent("ann", skills={"fr": 5}, queues={"sales"}), OP))
    assert "sales" not in s.router.queues and "ann" not in s.router.agents
    s.advance(3)
    assert "sales" in s.router.queues and "ann" in s.router.agents
    assert "office" in s.intake.calendars
    s.login("ann")
    task = s.call("sales")
    assert s.last_offer("ann").task_id == task.id

    run(cli.set_skills("ann", {"fr": 7}, OP))
    s.advance(3)
    assert s.router.agents["ann"].skills == {"fr": 7}
    assert s.router.agents["ann"].status is Presence.AVAILABLE  # status and work kept
    watch.stop()


def test_the_watch_reapplies_nothing_twice_and_applies_removals():
    s = build_stack()
    server = live(s)
    watch = ConfigurationWatch(MemoryConfigurationLog(s.store), server, s.clock, interval=3)
    result(watch.mark())
    watch.start()
    run(server.put_queue(Queue("sales"), OP))
    run(server.put_agent(Agent("ann", queues={"sales"}), OP))
    before = list(s.store.agent_events)
    s.advance(3)
    s.advance(3)
    assert s.store.agent_events == before  # the server's own changes: nothing new

    cli = offline(s)
    run(cli.remove_agent("ann", OP))
    run(cli.remove_queue("sales", OP))
    s.advance(3)
    assert "ann" not in s.router.agents and "sales" not in s.router.queues
    after = list(s.store.agent_events)
    s.advance(3)
    assert s.store.agent_events == after  # removals seen again: nothing new either
    watch.stop()
