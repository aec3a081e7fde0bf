"""Scenario files (dispatcher/runtime/scenario.py): the example in docs/ reads, and every bad
value is refused with its key named."""

from __future__ import annotations

import copy
import random
import re
import statistics
from pathlib import Path

import pytest

from dispatcher.domain.agents import DEFAULT_INTERRUPTIONS, interruptions
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.tasks import Channel
from dispatcher.runtime import scenario
from dispatcher.runtime.scenario import INTERVALS_PER_DAY, HandleTime

EXAMPLE = Path(__file__).parents[3] / "docs" / "scenarios" / "blended-centre.toml"

GOOD = {
    "scenario": {"name": "t", "date": "2026-03-02", "timezone": "Europe/Paris", "days": 2},
    "calendars": {"office": {"hours": {"mon": [["08:00", "18:00"]]}}},
    "queues": [{"name": "support", "skills": {"support": 1}, "sl_seconds": {"phone": 30},
                "deadline": "sliding 4h", "calendar": "office", "wrap_up_seconds": 20}],
    "agents": [{"name": "a", "count": 2, "shift": ["08:00", "17:00"],
                "breaks": [["12:00", "12:30"]]}],
    "traffic": [{"queue": "support", "channel": "phone", "start": "08:00",
                 "per_interval": [4, 5], "handle": {"mean": 200}, "patience": 60}],
}


def test_the_documented_example_reads():
    s = scenario.load(EXAMPLE)
    assert s.name == "blended support centre" and s.days == 3
    assert [q.name for q in s.queues] == ["support"]
    assert s.queue("support").deadline == "sliding 4h"
    assert s.agent_count == 6
    phone = next(t for t in s.traffic if t.channel is Channel.PHONE)
    assert phone.patience == 90 and phone.handle.distribution == "lognormal"
    assert len(phone.profile) == INTERVALS_PER_DAY and phone.profile[32] == 8
    assert sum(phone.profile[:32]) == 0  # nothing before 08:00


def test_a_good_scenario_and_its_defaults():
    s = scenario.parse(GOOD)
    q = s.queue("support")
    assert q.sl_seconds[Channel.PHONE] == 30 and q.sl_seconds[Channel.EMAIL] == 24 * 3600
    group = s.agents[0]
    assert group.shift == (8 * 3600, 17 * 3600) and group.breaks == ((12 * 3600, 12.5 * 3600),)
    assert group.queues == {"support"} and group.channels == {Channel.PHONE, Channel.EMAIL}
    assert s.traffic[0].profile[32:35] == (4, 5, 0)
    # local midnight in Paris on 2 March 2026 (UTC+1)
    assert s.start == 1772406000.0


@pytest.mark.parametrize(("path", "value", "words"), [
    (("queues", 0, "sl_seconds", "phone"), -1, "queues[0].sl_seconds.phone: a number at least 0"),
    (("queues", 0, "deadline"), "soon", "queues[0].deadline:"),
    (("queues", 0, "calendar"), "nights", "queues[0].calendar: no calendar 'nights'"),
    (("queues", 0, "name"), "a b", "queues[0].name:"),
    (("queues", 0, "colour"), "red", "queues[0].colour: unknown key"),
    (("agents", 0, "shift"), ["18:00", "08:00"], "agents[0].shift: ends at or before"),
    (("agents", 0, "breaks"), [["07:00", "07:30"]], "agents[0].breaks[0]: must lie inside"),
    (("agents", 0, "count"), -1, "agents[0].count: an integer"),
    (("agents", 0, "queues"), ["sales"], "agents[0].queues: no queue 'sales'"),
    (("agents", 0, "capacity"), {"fax": 1}, "agents[0].capacity: a channel"),
    (("traffic", 0, "handle", "distribution"), "gamma", "traffic[0].handle.distribution"),
    (("traffic", 0, "handle", "mean"), 0, "traffic[0].handle.mean: a number more than 0"),
    (("traffic", 0, "patience"), "long", "traffic[0].patience: a number"),
    (("traffic", 0, "start"), "25:00", "traffic[0].start:"),
    (("traffic", 0, "per_interval"), [1] * 97, "traffic[0].per_interval:"),
    (("traffic", 0, "queue"), "sales", "traffic[0].queue: no queue 'sales'"),
    (("scenario", "timezone"), "Mars/Olympus", "scenario.timezone: unknown time zone"),
    (("scenario", "days"), 0, "scenario.days: an integer 1-31"),
    (("calendars", "office", "hours"), {"someday": []}, "calendars.office:"),
])
def test_bad_values_name_their_key(path, value, words):
    data = copy.deepcopy(GOOD)
    where = data
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    with pytest.raises(InvalidValue) as caught:
        scenario.parse(data)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_email_patience_and_a_lognormal_without_sd_are_refused():
    data = copy.deepcopy(GOOD)
    data["traffic"][0]["channel"] = "email"
    with pytest.raises(InvalidValue, match=r"traffic\[0\].patience: only callers abandon"):
        scenario.parse(data)
    data = copy.deepcopy(GOOD)
    data["traffic"][0]["handle"] = {"distribution": "lognormal", "mean": 100}
    with pytest.raises(InvalidValue, match=r"traffic\[0\].handle.sd"):
        scenario.parse(data)


def test_files_that_are_missing_or_not_toml(tmp_path):
    with pytest.raises(InvalidValue, match="scenario .*nothing.toml"):
        scenario.load(tmp_path / "nothing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario\nname = 1\n")
    with pytest.raises(InvalidValue, match="not TOML"):
        scenario.load(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text('[scenario]\nname = "x"\n[[queues]]\nname = "q"\n[[traffic]]\n'
                    'queue = "q"\nchannel = "phone"\nper_interval = [1]\n'
                    'handle = { mean = 100, sd = "x" }\n')
    with pytest.raises(InvalidValue, match=r"typo.toml: traffic\[0\].handle.sd"):
        scenario.load(typo)


@pytest.mark.parametrize(("handle", "sd"), [
    (HandleTime("exponential", 300), 300),
    (HandleTime("lognormal", 300, 150), 150),
    (HandleTime("fixed", 300), 0),
])
def test_handling_times_have_the_mean_and_spread_asked(handle, sd):
    rng = random.Random(4)
    draws = [handle.draw(rng) for _ in range(40_000)]
    assert statistics.mean(draws) == pytest.approx(300, rel=0.02)
    assert statistics.pstdev(draws) == pytest.approx(sd, rel=0.05, abs=1e-9)


def test_the_blend_of_a_scenario():
    s = scenario.parse({
        "scenario": {"interruptions": "email:email; phone:"},
        "queues": [{"name": "q", "reserve": 2}],
        "agents": [{"name": "a", "interruptions": {"email": ["email", "phone"], "phone": []}},
                   {"name": "b"}],
        "traffic": [{"queue": "q", "channel": "phone", "per_interval": [1],
                     "handle": {"mean": 60}}]})
    assert s.interruptions == interruptions("email:email; phone:")
    assert s.queues[0].reserve == 2
    assert s.agents[0].interruptions == DEFAULT_INTERRUPTIONS and s.agents[1].interruptions is None
    for bad, words in (({"scenario": {"interruptions": "fax:"}}, "scenario.interruptions"),
                       ({"queues": [{"name": "q", "reserve": -1}]}, "queues[0].reserve")):
        with pytest.raises(InvalidValue, match=re.escape(words)):
            scenario.parse({"queues": [{"name": "q"}], "traffic": [
                {"queue": "q", "channel": "phone", "per_interval": [1],
                 "handle": {"mean": 60}}], **bad})
