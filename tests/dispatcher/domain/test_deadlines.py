"""Tests of dispatcher.domain.deadlines: business calendars, sliding and scheduled rules.

Expected instants are computed by hand, in Europe/Paris wall-clock time (2026: DST starts Sunday
29 March 02:00 -> 03:00 and ends Sunday 25 October 03:00 -> 02:00; Christmas is a Friday, Easter
Monday is 6 April).
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.domain.deadlines import (
    ALWAYS_OPEN,
    BusinessCalendar,
    ScheduledDeadline,
    SlidingDeadline,
    extend_for_pause,
    format_rule,
    parse_rule,
)
from dispatcher.domain.errors import InvalidValue

PARIS = ZoneInfo("Europe/Paris")
HOUR = 3600.0
MINUTE = 60.0
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
CHRISTMAS = "2026-12-25"
EASTER_MONDAY = "2026-04-06"


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    """A Paris wall-clock time as an epoch float (never inside a DST gap in these tests)."""
    return datetime(year, month, day, hour, minute, tzinfo=PARIS).timestamp()


def office(*holidays: str) -> BusinessCalendar:
    """Mon-Fri 09:00-17:00 in Paris."""
    return BusinessCalendar.from_spec(
        "office", "Europe/Paris", {d: [["09:00", "17:00"]] for d in WEEKDAYS}, holidays
    )


LUNCH_BREAK = BusinessCalendar.from_spec(
    "lunch_break",
    "Europe/Paris",
    {d: [["13:30", "18:00"], ["09:00", "12:30"]] for d in WEEKDAYS},
    [CHRISTMAS, EASTER_MONDAY],
)
# Opens across midnight and over both of the night's DST changes.
NIGHT_SHIFT = BusinessCalendar.from_spec(
    "night_shift",
    "Europe/Paris",
    {
        d: [["00:00", "01:30"], ["02:15", "02:45"], ["03:00", "04:00"], ["22:00", "24:00"]]
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    },
)
NEW_YORK = BusinessCalendar.from_spec(
    "new_york", "America/New_York", {d: [["08:00", "20:00"]] for d in WEEKDAYS}, ["2026-07-03"]
)


# -- calendar construction -------------------------------------------------------------------


def test_from_spec_sorts_intervals_and_reads_24_00_as_end_of_day() -> None:
    cal = BusinessCalendar.from_spec("c", "UTC", {"Mon": [["20:00", "24:00"], ["08:00", "12:00"]]})
    assert cal.hours == {0: ((time(8), time(12)), (time(20), time(0)))}
    assert cal.holidays == frozenset()


def test_from_spec_reads_holidays() -> None:
    assert office(CHRISTMAS).holidays == frozenset({date(2026, 12, 25)})


def test_calendars_are_hashable_and_compare_by_value() -> None:
    assert office(CHRISTMAS) == office(CHRISTMAS)
    assert hash(office(CHRISTMAS)) == hash(office(CHRISTMAS))
    assert office(CHRISTMAS) != office()


def test_hours_are_frozen() -> None:
    with pytest.raises(TypeError):
        office().hours[5] = ((time(9), time(10)),)  # type: ignore[index]


@pytest.mark.parametrize(
    ("hours", "holidays", "timezone", "fragment"),
    [
        ({"funday": [["09:00", "17:00"]]}, (), "UTC", "unknown weekday"),
        ({"mon": [["9h", "17:00"]]}, (), "UTC", "HH:MM"),
        ({"mon": [["25:00", "26:00"]]}, (), "UTC", "not a time of day"),
        ({"mon": [["09:60", "17:00"]]}, (), "UTC", "not a time of day"),
        ({"mon": [["17:00", "09:00"]]}, (), "UTC", "ends before it starts"),
        ({"mon": [["09:00", "09:00"]]}, (), "UTC", "ends before it starts"),
        ({"mon": [["09:00", "12:00"], ["11:00", "14:00"]]}, (), "UTC", "overlaps"),
        ({"mon": [["24:00", "24:00"]]}, (), "UTC", "cannot start at 24:00"),
        ({"mon": [["20:00", "00:00"]]}, (), "UTC", "write 24:00"),
        ({"mon": [["09:00"]]}, (), "UTC", "pair"),
        ({"mon": "09:00-17:00"}, (), "UTC", "list"),
        ({"mon": [["09:00", "17:00"]], "MON": []}, (), "UTC", "twice"),
        ({"mon": [["09:00", "17:00"]]}, ("25/12/2026",), "UTC", "ISO date"),
        ({"mon": [["09:00", "17:00"]]}, "2026-12-25", "UTC", "list of ISO dates"),
        ({"mon": [["09:00", "17:00"]]}, (), "Mars/Olympus_Mons", "unknown time zone"),
        ({"mon": [["09:00", "17:00"]]}, (), "", "unknown time zone"),
        ({}, (), "UTC", "never opens"),
        ({"sat": []}, (), "UTC", "never opens"),
    ],
)
def test_from_spec_rejects_bad_input(hours, holidays, timezone, fragment) -> None:
    with pytest.raises(InvalidValue, match=fragment):
        BusinessCalendar.from_spec("bad", timezone, hours, holidays)


@pytest.mark.parametrize(
    "hours",
    [
        {7: ((time(9), time(17)),)},
        {0: ((time(12), time(14)), (time(9), time(13)))},
        {0: ((time(9, tzinfo=PARIS), time(17)),)},
        {0: ((time(9),),)},
    ],
)
def test_direct_construction_is_validated(hours) -> None:
    with pytest.raises(InvalidValue):
        BusinessCalendar("bad", "UTC", hours)


def test_touching_intervals_are_allowed() -> None:
    cal = BusinessCalendar.from_spec("c", "UTC", {"mon": [["09:00", "12:00"], ["12:00", "13:00"]]})
    monday_noon = datetime(2026, 3, 2, 12, tzinfo=ZoneInfo("UTC")).timestamp()
    assert cal.is_open(monday_noon)
    assert cal.add_business_seconds(monday_noon - HOUR, 2 * HOUR) == monday_noon + HOUR


# -- is_open / next_opening --------------------------------------------------------------------


def test_is_open_boundaries_weekends_and_holidays() -> None:
    cal = office(CHRISTMAS)
    assert cal.is_open(paris(2026, 3, 2, 9))  # Monday, opening instant
    assert cal.is_open(paris(2026, 3, 2, 17) - 1)
    assert not cal.is_open(paris(2026, 3, 2, 17))  # the end is closed
    assert not cal.is_open(paris(2026, 3, 2, 8, 59))
    assert not cal.is_open(paris(2026, 3, 7, 12))  # Saturday
    assert not cal.is_open(paris(2026, 12, 25, 12))  # Christmas (a Friday)
    assert cal.is_open(paris(2026, 12, 24, 12))


def test_next_opening() -> None:
    cal = office(CHRISTMAS)
    inside = paris(2026, 3, 3, 10, 15)
    assert cal.next_opening(inside) == inside
    assert cal.next_opening(paris(2026, 3, 3, 7)) == paris(2026, 3, 3, 9)
    assert cal.next_opening(paris(2026, 3, 6, 18)) == paris(2026, 3, 9, 9)  # Fri -> Mon
    assert cal.next_opening(paris(2026, 12, 24, 17)) == paris(2026, 12, 28, 9)  # over Christmas


def test_opening_hours_are_wall_clock_on_both_sides_of_dst() -> None:
    cal = office()
    # 09:00 Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    assert cal.next_opening(paris(2026, 3, 28, 12)) == paris(2026, 3, 30, 9)
    assert paris(2026, 3, 30, 9) - paris(2026, 3, 27, 9) == 3 * 24 * HOUR - HOUR
    assert cal.next_opening(paris(2026, 10, 24, 12)) == paris(2026, 10, 26, 9)
    assert cal.is_open(paris(2026, 10, 26, 9)) and not cal.is_open(paris(2026, 10, 26, 9) - 1)


def test_always_open() -> None:
    t = paris(2026, 12, 25, 3, 17)
    assert ALWAYS_OPEN.is_open(t)
    assert ALWAYS_OPEN.next_opening(t) == t
    assert ALWAYS_OPEN.add_business_seconds(t, 100 * HOUR) == t + 100 * HOUR
    assert ALWAYS_OPEN.business_seconds_between(t, t + 5 * 24 * HOUR) == 5 * 24 * HOUR
    assert ALWAYS_OPEN.business_day(t, 1) == date(2026, 12, 26)


# -- add_business_seconds ----------------------------------------------------------------------


def test_friday_afternoon_plus_three_hours_is_monday_morning() -> None:
    assert office().add_business_seconds(paris(2026, 3, 6, 16), 3 * HOUR) == paris(2026, 3, 9, 11)


def test_add_across_the_march_dst_change() -> None:
    result = office().add_business_seconds(paris(2026, 3, 27, 16), 3 * HOUR)
    assert result == paris(2026, 3, 30, 11)  # 11:00 CEST


def test_add_across_the_october_dst_change() -> None:
    result = office().add_business_seconds(paris(2026, 10, 23, 16), 3 * HOUR)
    assert result == paris(2026, 10, 26, 11)  # 11:00 CET


def test_add_skips_christmas() -> None:
    result = office(CHRISTMAS).add_business_seconds(paris(2026, 12, 24, 16), 3 * HOUR)
    assert result == paris(2026, 12, 28, 11)


def test_add_from_inside_an_interval_and_over_lunch() -> None:
    assert LUNCH_BREAK.add_business_seconds(paris(2026, 3, 2, 10), HOUR) == paris(2026, 3, 2, 11)
    # Monday 11:00: 1h30 to 12:30, lunch, 30 min from 13:30.
    assert LUNCH_BREAK.add_business_seconds(paris(2026, 3, 2, 11), 2 * HOUR) == paris(
        2026, 3, 2, 14
    )


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (paris(2026, 3, 7, 10), paris(2026, 3, 9, 10)),  # Saturday -> Monday
        (paris(2026, 3, 3, 7), paris(2026, 3, 3, 10)),  # before opening
        (paris(2026, 3, 3, 20), paris(2026, 3, 4, 10)),  # evening
        (paris(2026, 3, 3, 17), paris(2026, 3, 4, 10)),  # exactly at closing
    ],
)
def test_add_from_closed_time_counts_from_the_next_opening(start: float, expected: float) -> None:
    assert office().add_business_seconds(start, HOUR) == expected


def test_add_zero_is_next_opening() -> None:
    cal = office()
    assert cal.add_business_seconds(paris(2026, 3, 7, 10), 0) == paris(2026, 3, 9, 9)
    inside = paris(2026, 3, 9, 10, 30)
    assert cal.add_business_seconds(inside, 0) == inside


def test_add_ending_exactly_at_closing_returns_the_closing_instant() -> None:
    assert office().add_business_seconds(paris(2026, 3, 2, 9), 8 * HOUR) == paris(2026, 3, 2, 17)


def test_add_runs_across_midnight_with_24_00_end() -> None:
    cal = BusinessCalendar.from_spec(
        "late", "Europe/Paris", {"mon": [["20:00", "24:00"]], "tue": [["00:00", "02:00"]]}
    )
    assert cal.add_business_seconds(paris(2026, 3, 2, 23), 2 * HOUR) == paris(2026, 3, 3, 1)
    assert cal.is_open(paris(2026, 3, 3) - 1) and cal.is_open(paris(2026, 3, 3))
    assert cal.business_seconds_between(paris(2026, 3, 2, 20), paris(2026, 3, 3, 2)) == 6 * HOUR


def test_very_long_span_steps_by_interval() -> None:
    # 2,000 h of 8 h days = 250 business days = 50 weeks from Monday 5 January 2026.
    start = paris(2026, 1, 5, 9)
    result = office().add_business_seconds(start, 2000 * HOUR)
    assert result == paris(2026, 12, 18, 17)
    assert office().business_seconds_between(start, result) == 2000 * HOUR


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
def test_add_rejects_negative_or_non_finite_seconds(seconds: float) -> None:
    with pytest.raises(InvalidValue):
        office().add_business_seconds(paris(2026, 3, 2, 9), seconds)


# -- business_seconds_between ------------------------------------------------------------------


def test_between() -> None:
    cal = office(CHRISTMAS)
    assert cal.business_seconds_between(paris(2026, 3, 6, 16), paris(2026, 3, 9, 11)) == 3 * HOUR
    assert cal.business_seconds_between(paris(2026, 3, 9, 11), paris(2026, 3, 6, 16)) == 0
    assert cal.business_seconds_between(paris(2026, 3, 9, 11), paris(2026, 3, 9, 11)) == 0
    assert cal.business_seconds_between(paris(2026, 3, 28), paris(2026, 3, 30, 9)) == 0
    # Monday 2 to Sunday 8 March: five full days.
    assert cal.business_seconds_between(paris(2026, 3, 2), paris(2026, 3, 9)) == 40 * HOUR
    # Christmas week: Monday 21 to Sunday 27 December has four business days.
    assert cal.business_seconds_between(paris(2026, 12, 21), paris(2026, 12, 28)) == 32 * HOUR


def test_a_whole_day_spanning_dst_changes_is_its_real_length() -> None:
    cal = BusinessCalendar.from_spec("sundays", "Europe/Paris", {"sun": [["00:00", "24:00"]]})
    assert cal.business_seconds_between(paris(2026, 3, 28), paris(2026, 3, 31)) == 23 * HOUR
    assert cal.business_seconds_between(paris(2026, 10, 24), paris(2026, 10, 27)) == 25 * HOUR
    assert cal.business_seconds_between(paris(2026, 3, 21), paris(2026, 3, 24)) == 24 * HOUR


def test_openings_inside_or_across_the_spring_gap() -> None:
    gap = BusinessCalendar.from_spec("gap", "Europe/Paris", {"sun": [["02:00", "03:00"]]})
    across = BusinessCalendar.from_spec("across", "Europe/Paris", {"sun": [["01:00", "02:30"]]})
    dst_weekend = (paris(2026, 3, 28), paris(2026, 3, 30))
    plain_weekend = (paris(2026, 3, 21), paris(2026, 3, 23))
    assert gap.business_seconds_between(*dst_weekend) == 0  # 02:00-03:00 does not exist
    assert gap.business_seconds_between(*plain_weekend) == HOUR
    # 01:00 CET to the change (02:00 CET = 03:00 CEST): one real hour instead of 1h30.
    assert across.business_seconds_between(*dst_weekend) == HOUR
    assert across.business_seconds_between(*plain_weekend) == 1.5 * HOUR
    assert gap.next_opening(paris(2026, 3, 28)) == paris(2026, 4, 5, 2)


# -- business_day ------------------------------------------------------------------------------


def test_business_day() -> None:
    cal = office(EASTER_MONDAY)
    friday = paris(2026, 3, 6, 10)
    assert cal.business_day(friday, 0) == date(2026, 3, 6)
    assert cal.business_day(friday, 1) == date(2026, 3, 9)
    assert cal.business_day(paris(2026, 3, 9, 10), 5) == date(2026, 3, 16)
    assert cal.business_day(paris(2026, 3, 7, 10), 0) == date(2026, 3, 9)  # Saturday
    assert cal.business_day(paris(2026, 3, 7, 10), 1) == date(2026, 3, 9)
    assert cal.business_day(paris(2026, 4, 3, 10), 1) == date(2026, 4, 7)  # over Easter Monday
    assert cal.business_day(paris(2026, 4, 6, 10), 0) == date(2026, 4, 7)


def test_business_day_uses_the_local_date() -> None:
    # Friday 23:30 UTC is already Saturday 00:30 in Paris.
    late_friday_utc = datetime(2026, 3, 6, 23, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    assert office().business_day(late_friday_utc, 0) == date(2026, 3, 9)
    assert ALWAYS_OPEN.business_day(late_friday_utc, 0) == date(2026, 3, 6)


def test_business_day_rejects_negative_offsets() -> None:
    with pytest.raises(InvalidValue):
        office().business_day(paris(2026, 3, 6), -1)


# -- rules ---------------------------------------------------------------------------------------


def test_sliding_deadline() -> None:
    # Monday 10:00: 7 h left on Monday, 8 on Tuesday and Wednesday, 1 on Thursday.
    assert SlidingDeadline(24).due(paris(2026, 3, 2, 10), office()) == paris(2026, 3, 5, 10)
    assert SlidingDeadline(1.5).due(paris(2026, 3, 6, 16), office()) == paris(2026, 3, 9, 9, 30)
    assert SlidingDeadline(24).due(paris(2026, 3, 2, 10), ALWAYS_OPEN) == paris(2026, 3, 3, 10)


def test_scheduled_next_business_day_from_a_friday_is_monday_noon() -> None:
    rule = ScheduledDeadline(time(12, 0))
    assert rule.due(paris(2026, 3, 6, 10), office()) == paris(2026, 3, 9, 12)
    assert rule.due(paris(2026, 3, 6, 23), office()) == paris(2026, 3, 9, 12)


def test_scheduled_before_a_monday_holiday_is_tuesday_noon() -> None:
    rule = ScheduledDeadline(time(12, 0), 1)
    assert rule.due(paris(2026, 4, 3, 15), office(EASTER_MONDAY)) == paris(2026, 4, 7, 12)


def test_scheduled_across_dst_is_local_noon() -> None:
    assert ScheduledDeadline(time(12)).due(paris(2026, 3, 27, 10), office()) == paris(
        2026, 3, 30, 12
    )


@pytest.mark.parametrize(
    ("arrival", "expected"),
    [
        (paris(2026, 3, 2, 10), paris(2026, 3, 2, 17, 30)),  # Monday morning: today
        (paris(2026, 3, 2, 17, 30), paris(2026, 3, 3, 17, 30)),  # exactly at the time: tomorrow
        (paris(2026, 3, 2, 18), paris(2026, 3, 3, 17, 30)),  # after it: next business day
        (paris(2026, 3, 6, 18), paris(2026, 3, 9, 17, 30)),  # Friday evening: Monday
        (paris(2026, 3, 7, 9), paris(2026, 3, 9, 17, 30)),  # Saturday: Monday
    ],
)
def test_scheduled_same_day(arrival: float, expected: float) -> None:
    assert ScheduledDeadline(time(17, 30), 0).due(arrival, office()) == expected


def test_scheduled_from_a_saturday_with_plus_one_is_monday() -> None:
    assert ScheduledDeadline(time(12)).due(paris(2026, 3, 7, 9), office()) == paris(2026, 3, 9, 12)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SlidingDeadline(0),
        lambda: SlidingDeadline(-1),
        lambda: SlidingDeadline(float("nan")),
        lambda: SlidingDeadline(1e9),
        lambda: ScheduledDeadline(time(12), -1),
        lambda: ScheduledDeadline(time(12), 10_000),
        lambda: ScheduledDeadline(time(12, 0, 30)),
        lambda: ScheduledDeadline(time(12, tzinfo=PARIS)),
    ],
)
def test_rules_validate_their_values(make) -> None:
    with pytest.raises(InvalidValue):
        make()


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ("sliding 24h", SlidingDeadline(24)),
        ("sliding 90m", SlidingDeadline(1.5)),
        ("sliding 8", SlidingDeadline(8)),
        ("sliding 2.5h", SlidingDeadline(2.5)),
        ("  Sliding   4 H ", SlidingDeadline(4)),
        ("scheduled 12:00 +1", ScheduledDeadline(time(12), 1)),
        ("scheduled 17:30 +0", ScheduledDeadline(time(17, 30), 0)),
        ("scheduled 12:00", ScheduledDeadline(time(12), 1)),
        ("scheduled 9:05 +2", ScheduledDeadline(time(9, 5), 2)),
    ],
)
def test_parse_rule(spec: str, rule) -> None:
    assert parse_rule(spec) == rule


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "sliding",
        "sliding h",
        "sliding -1h",
        "sliding 5d",
        "sliding 1,5h",
        "scheduled",
        "scheduled noon",
        "scheduled 25:00 +1",
        "scheduled 24:00 +1",
        "scheduled 12:60",
        "scheduled 12:00 +x",
        "scheduled 12:00 -1",
        "weekly 12:00",
    ],
)
def test_parse_rule_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(InvalidValue):
        parse_rule(spec)


def test_parse_rule_error_lists_the_accepted_forms() -> None:
    with pytest.raises(InvalidValue, match=r'"sliding <N>h".*"scheduled <HH:MM> \+<days>"'):
        parse_rule("by tomorrow")


@pytest.mark.parametrize("spec", ["sliding 0h", "sliding 0m", "scheduled 12:00 +9999"])
def test_parse_rule_rejects_out_of_range_values(spec: str) -> None:
    with pytest.raises(InvalidValue):
        parse_rule(spec)


@pytest.mark.parametrize(
    ("rule", "spec"),
    [
        (SlidingDeadline(24), "sliding 24h"),
        (SlidingDeadline(1.5), "sliding 90m"),
        (SlidingDeadline(1e-5), "sliding 0.00001h"),
        (ScheduledDeadline(time(12)), "scheduled 12:00 +1"),
        (ScheduledDeadline(time(9, 5), 0), "scheduled 09:05 +0"),
    ],
)
def test_format_rule(rule, spec: str) -> None:
    assert format_rule(rule) == spec


RULES = st.one_of(
    st.builds(
        SlidingDeadline,
        st.one_of(
            st.integers(min_value=1, max_value=1000).map(float),
            st.integers(min_value=1, max_value=60_000).map(lambda m: m / 60),
            st.floats(min_value=1e-9, max_value=87_600, allow_nan=False),
        ),
    ),
    st.builds(
        ScheduledDeadline,
        st.times().map(lambda t: t.replace(second=0, microsecond=0)),
        st.integers(min_value=0, max_value=365),
    ),
)


@given(RULES)
def test_format_then_parse_round_trips(rule) -> None:
    assert parse_rule(format_rule(rule)) == rule


# -- extend_for_pause ----------------------------------------------------------------------------


def test_pause_pushes_the_deadline_by_its_business_time() -> None:
    cal = office()
    # Paused Friday 16:00 -> Monday 10:00: 2 business hours; Monday 11:00 becomes 13:00.
    pushed = extend_for_pause(
        paris(2026, 3, 9, 11), paris(2026, 3, 6, 16), paris(2026, 3, 9, 10), cal
    )
    assert pushed == paris(2026, 3, 9, 13)


def test_pause_is_counted_in_business_time_from_the_old_deadline() -> None:
    cal = office()
    pushed = extend_for_pause(
        paris(2026, 3, 9, 16, 30), paris(2026, 3, 9, 9), paris(2026, 3, 9, 10), cal
    )
    assert pushed == paris(2026, 3, 10, 9, 30)


def test_pause_in_closed_time_leaves_the_deadline_alone() -> None:
    deadline = paris(2026, 3, 7, 12)  # a Saturday, deliberately closed
    assert (
        extend_for_pause(deadline, paris(2026, 3, 6, 18), paris(2026, 3, 9, 9), office())
        == deadline
    )


def test_pause_that_ends_before_it_starts_is_rejected() -> None:
    with pytest.raises(InvalidValue):
        extend_for_pause(paris(2026, 3, 9), paris(2026, 3, 9, 11), paris(2026, 3, 9, 10), office())


# -- properties ------------------------------------------------------------------------------------

CALENDARS = st.sampled_from([office(CHRISTMAS), LUNCH_BREAK, NIGHT_SHIFT, NEW_YORK, ALWAYS_OPEN])
DST_CHANGES = [
    paris(2026, 3, 29),
    paris(2026, 10, 25),
    datetime(2026, 3, 8, tzinfo=ZoneInfo("America/New_York")).timestamp(),
    datetime(2026, 11, 1, tzinfo=ZoneInfo("America/New_York")).timestamp(),
]
STARTS = st.one_of(
    st.floats(min_value=paris(2026, 1, 1), max_value=paris(2027, 12, 31)),
    st.integers(int(paris(2026, 1, 1) // MINUTE), int(paris(2027, 12, 31) // MINUTE)).map(
        lambda m: m * MINUTE
    ),
    st.tuples(st.sampled_from(DST_CHANGES), st.integers(-3 * 24 * 60, 3 * 24 * 60)).map(
        lambda pair: pair[0] + pair[1] * MINUTE
    ),
)
MAX_PROPERTY_SECONDS = 500 * HOUR
SECONDS = st.one_of(
    st.just(0.0),
    st.integers(min_value=0, max_value=int(MAX_PROPERTY_SECONDS // MINUTE)).map(
        lambda m: m * MINUTE
    ),
    st.floats(min_value=0, max_value=MAX_PROPERTY_SECONDS, allow_nan=False),
)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


@PROPERTY_SETTINGS
@given(CALENDARS, STARTS, SECONDS, SECONDS)
def test_add_is_monotonic_in_seconds(cal: BusinessCalendar, start: float, s1: float, s2: float):
    low, high = sorted((s1, s2))
    assert cal.add_business_seconds(start, low) <= cal.add_business_seconds(start, high)


@PROPERTY_SETTINGS
@given(CALENDARS, STARTS, SECONDS, st.booleans())
def test_between_inverts_add(cal: BusinessCalendar, t: float, seconds: float, snap: bool) -> None:
    start = cal.next_opening(t) if snap else t
    end = cal.add_business_seconds(start, seconds)
    assert cal.business_seconds_between(start, end) == pytest.approx(seconds, abs=1e-6)


@PROPERTY_SETTINGS
@given(CALENDARS, STARTS, SECONDS)
def test_add_never_lands_in_closed_time_except_at_an_interval_end(
    cal: BusinessCalendar, start: float, seconds: float
) -> None:
    end = cal.add_business_seconds(start, seconds)
    assert end >= start
    at_interval_end = cal.business_seconds_between(end - 1e-3, end) > 0
    assert cal.is_open(end) or at_interval_end


# -- each day's openings worked out once -------------------------------------------------------


def test_a_calendar_keeps_its_days_and_answers_as_a_fresh_one_past_its_bound() -> None:
    """Three years of days (past CACHED_DAYS, so the kept days are dropped once), over DST
    changes and holidays: a calendar asked again and again answers as a new one asked once."""
    spec = ("night_shift", "Europe/Paris",
            {d: [["00:00", "01:30"], ["02:15", "02:45"], ["22:00", "24:00"]] for d in WEEKDAYS},
            [CHRISTMAS, EASTER_MONDAY])
    kept = BusinessCalendar.from_spec(*spec)
    start = paris(2026, 1, 1, 12)
    for day in range(3 * 365):
        t = start + day * 24 * HOUR
        fresh = BusinessCalendar.from_spec(*spec)
        assert kept.is_open(t + 13 * HOUR) == fresh.is_open(t + 13 * HOUR)
        assert kept.next_opening(t) == fresh.next_opening(t)
        assert kept.add_business_seconds(t, 5 * HOUR) == fresh.add_business_seconds(t, 5 * HOUR)
