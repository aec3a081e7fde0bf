"""The router with requirement expressions (dispatcher/domain/routing.py with
dispatcher/domain/expressions.py): a task goes only to agents who meet its queue's expression
bound to its attributes, at every step, after a change of the queue or of an agent, and after a
restart; the highest-skill order counts the skills the expression reads."""

from __future__ import annotations

import json

import pytest

from dispatcher.domain import events as ev
from dispatcher.domain.agents import Agent, Presence
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.explanations import explain_in_words
from dispatcher.domain.queues import AgentChoice, EscalationStep, Queue
from dispatcher.domain.routing import Router
from dispatcher.domain.tasks import Channel, Task, TaskState
from tests.dispatcher.domain.test_routing import check, offers

T0 = 1_000_000.0
EMAIL = Channel.EMAIL
LANGUAGE = 'support >= 5 AND languages HAS task.language AND NOT (tier = "trainee")'


def centre(expression: str = LANGUAGE, **queue) -> Router:
    r = Router()
    r.put_queue(Queue("support", expression=expression, **queue), T0)
    for i, (aid, skills, attrs) in enumerate([
            ("ann", {"support": 6}, {"languages": ["en"]}),
            ("fanny", {"support": 6}, {"languages": ["fr", "en"], "tier": "senior"}),
            ("theo", {"support": 9}, {"languages": ["fr"], "tier": "trainee"})]):
        r.put_agent(Agent(aid, skills=skills, attributes=attrs, queues={"support"},
                          channels={EMAIL}), T0)
        check(r.set_status(aid, Presence.AVAILABLE, T0 + i))
    return r


def mail(task_id: str, at: float = T0 + 10, **attributes) -> Task:
    return Task(task_id, EMAIL, "support", None, at, attributes=attributes)


def test_a_french_task_goes_to_the_french_speaker_and_never_to_the_trainee():
    r = centre()
    assert offers(r.submit(mail("fr1", language="fr"), T0 + 10)) == [("fr1", "fanny")]
    # fanny holds it (capacity 3, but her offer is pending): the next French task waits,
    # though ann (English) and theo (trainee) are free.
    assert offers(r.submit(mail("fr2", language="fr"), T0 + 11)) == []
    assert offers(r.submit(mail("en1", language="en"), T0 + 12)) == [("en1", "ann")]
    assert offers(r.accept("fanny", r.tasks["fr1"].offer_id, T0 + 13)) == [("fr2", "fanny")]


def test_a_task_without_the_attribute_goes_to_nobody_unless_the_expression_allows_it():
    r = centre()
    assert offers(r.submit(mail("none"), T0 + 10)) == []
    r2 = centre("NOT task.language OR languages HAS task.language")
    assert offers(r2.submit(mail("none"), T0 + 10)) == [("none", "ann")]


def test_a_task_is_bound_once_and_an_unmatchable_binding_escalates_at_once():
    r = centre(steps=(EscalationStep(60, {}, "languages HAS task.language"),))
    check(r.set_status("fanny", Presence.BREAK, T0 + 5))
    assert offers(r.submit(mail("fr1", language="fr"), T0 + 10)) == []
    assert r.tasks["fr1"].condition.text == (
        'support >= 5 AND languages HAS "fr" AND NOT (tier = "trainee")')
    assert r.tasks["fr1"].step == 0  # fanny could take it: it waits for her
    # Nobody speaks German: the first step is skipped at once (as with skill levels).
    out = r.submit(mail("de1", language="de"), T0 + 11)
    assert [e.data["skipped_unmatchable"] for e in out.events
            if e.kind == ev.TASK_ESCALATED] == [[0]]
    assert r.tasks["de1"].condition.text == 'languages HAS "de"'


def test_an_escalation_step_replaces_the_expression():
    # After 60 s anyone who speaks the language may take it, trainees included.
    r = centre(steps=(EscalationStep(60, {}, "languages HAS task.language"),))
    check(r.set_status("fanny", Presence.BREAK, T0 + 5))
    assert offers(r.submit(mail("fr1", at=T0 + 10, language="fr"), T0 + 10)) == []
    out = check(r.escalate("fr1", T0 + 71))
    assert offers(out) == [("fr1", "theo")]
    escalated = next(e for e in out.events if e.kind == ev.TASK_ESCALATED)
    assert escalated.data["condition"] == 'languages HAS "fr"'


def test_an_empty_step_expression_drops_it_and_unmatchable_steps_are_skipped():
    q = Queue("support", expression='languages HAS "de"', steps=(
        EscalationStep(0, {}, 'tier = "nobody"'), EscalationStep(0, {}, "")))
    r = Router()
    r.put_queue(q, T0)
    r.put_agent(Agent("ann", queues={"support"}, channels={EMAIL}), T0)
    check(r.set_status("ann", Presence.AVAILABLE, T0))
    out = r.submit(mail("t"), T0 + 1)
    assert offers(out) == [("t", "ann")]
    escalated = next(e for e in out.events if e.kind == ev.TASK_ESCALATED)
    assert escalated.data["skipped_unmatchable"] == [0, 1]
    assert escalated.data["condition"] == ""


def test_changing_the_queue_expression_moves_waiting_tasks_at_once():
    r = centre()
    assert offers(r.submit(mail("de1", language="de"), T0 + 10)) == []
    out = r.put_queue(Queue("support", expression="support >= 5"), T0 + 20)
    assert offers(out) == [("de1", "ann")]
    assert r.tasks["de1"].condition.text == "support >= 5"


def test_an_agent_given_the_attribute_becomes_eligible():
    r = centre()
    assert offers(r.submit(mail("de1", language="de"), T0 + 10)) == []
    out = r.put_agent(Agent("ann", skills={"support": 6}, attributes={"languages": ["en", "de"]},
                            queues={"support"}, channels={EMAIL}), T0 + 20)
    assert offers(out) == [("de1", "ann")]


def test_highest_skill_counts_the_skills_the_expression_reads():
    r = Router()
    r.put_queue(Queue("q", expression="billing >= 1", agent_choice=AgentChoice.HIGHEST_SKILL),
                T0)
    for i, (aid, level) in enumerate((("low", 2), ("high", 8))):
        r.put_agent(Agent(aid, skills={"billing": level}, queues={"q"}, channels={EMAIL}), T0)
        check(r.set_status(aid, Presence.AVAILABLE, T0 + i))
    out = r.submit(Task("t", EMAIL, "q", None, T0 + 5), T0 + 5)
    assert offers(out) == [("t", "high")]


def test_requeued_and_restored_tasks_keep_their_condition():
    r = centre()
    check(r.submit(mail("fr1", language="fr"), T0 + 10))
    check(r.accept("fanny", r.tasks["fr1"].offer_id, T0 + 11))
    out = r.requeue("fr1", T0 + 12, "supervisor")
    assert r.tasks["fr1"].state is TaskState.OFFERED
    assert offers(out) == [("fr1", "fanny")]


@pytest.mark.parametrize("pack", [dict, json.dumps], ids=["decoded", "packed"])
def test_restore_binds_conditions_from_stored_attributes(pack):
    old = centre()
    check(old.submit(mail("fr1", language="fr"), T0 + 10))
    check(old.submit(mail("de1", language="de"), T0 + 11))
    fresh = Router()
    tasks = [Task(t.id, t.channel, t.queue, None, t.created_at, attributes=pack(t.attributes),
                  state=t.state, agent_id=t.agent_id, offer_id=t.offer_id)
             for t in old.tasks.values()]
    check(fresh.restore(old.queues.values(), [Agent(a.id, skills=a.skills,
                                                    attributes=a.attributes, queues=a.queues,
                                                    channels=a.channels)
                                              for a in old.agents.values()], tasks, [], T0 + 50))
    for aid in ("ann", "theo", "fanny"):
        out = check(fresh.set_status(aid, Presence.AVAILABLE, T0 + 60))
        expected = [("fr1", "fanny")] if aid == "fanny" else []
        assert offers(out) == expected, aid
    assert fresh.tasks["de1"].condition.text.count('"de"') == 1


def test_a_bad_expression_is_refused_when_the_queue_is_configured():
    with pytest.raises(InvalidValue, match="column 10"):
        Queue("q", expression="support >")
    with pytest.raises(InvalidValue, match="column"):
        Queue("q", steps=(EscalationStep(5, {}, "a AND"),))


def test_the_explanation_names_the_condition_and_who_does_not_meet_it():
    r = centre()
    out = r.submit(mail("fr1", language="fr"), T0 + 10)
    (why,) = [e.data["explanation"] for e in out.events if e.kind == ev.TASK_OFFERED]
    assert why["condition"] == 'support >= 5 AND languages HAS "fr" AND NOT (tier = "trainee")'
    details = {p["agent"]: p.get("detail") for p in why["passed"]}
    assert details["ann"] == f"does not meet {why['condition']}"
    words = explain_in_words(why)
    assert words.startswith("offered to fanny (")
    assert 'who may take it: support >= 5 AND languages HAS "fr"' in words
    assert "ann: does not meet" in words
