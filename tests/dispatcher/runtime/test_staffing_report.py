"""The HTML report of `switchboard staffing` (dispatcher/runtime/staffing_report.py): one page,
four plots drawn inline, nothing fetched, every text of the scenario escaped."""

from __future__ import annotations

import re

from dispatcher.runtime import scenario
from dispatcher.runtime.staffing import staffing
from dispatcher.runtime.staffing_report import report

HOSTILE = {
    "scenario": {"name": "<script>alert(1)</script> & co", "seed": 2},
    "queues": [{"name": "q"}],
    "traffic": [{"queue": "q", "channel": "phone", "start": "09:00", "per_interval": [20] * 8,
                 "handle": {"mean": 200}, "patience": 60},
                {"queue": "q", "channel": "email", "start": "09:00", "per_interval": [3] * 8,
                 "handle": {"mean": 300}}]}


def test_the_report_is_self_contained_and_escaped():
    s = scenario.parse(HOSTILE)
    page = report(s, staffing(s))
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert page.count("<svg") == 4 and not re.search(r"(src|href)=", page)
    assert "answered within 20 s" in page and ("met" in page)
    # one bar per interval with staff, stacked: 09:00-11:00 at least
    assert page.count("<rect") >= 8
    assert "09h" in page and "10h" in page
