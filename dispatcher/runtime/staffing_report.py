"""The HTML report of `switchboard staffing --html FILE`: one self-contained page (inline CSS
and SVG drawn here, no script, nothing fetched) with the plan and its check on the simulator.

Plots, per 15-minute interval of the day (simulated days added up): the agents planned (for
calls, and more for e-mail) with the call load in erlangs; the expected arrivals per channel;
the simulated call service level against its target; the simulated share of e-mails answered
by their deadline (by interval of arrival) against its target. Then the tables the text output
prints. Every text from the scenario is escaped.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from dispatcher.domain.tasks import Channel

from .scenario import INTERVALS_PER_DAY, Scenario
from .staffing import Staffing

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 860, 220, 48, 28, 12
COLOURS = {"calls": "#3b6ea5", "email": "#d08c2f", "load": "#222", "target": "#b22"}


def write_report(path: Path, scenario: Scenario, answer: Staffing) -> None:
    path.write_text(report(scenario, answer), encoding="utf-8")


def report(scenario: Scenario, answer: Staffing) -> str:
    plan = answer.plan
    active = [i for i in range(INTERVALS_PER_DAY) if plan.agents[i] or _arrivals(scenario, i)]
    first, last = (min(active), max(active) + 1) if active else (0, INTERVALS_PER_DAY)
    span = range(first, last)
    calls_sl, email_in_time = _by_interval(answer)
    email_extra = [plan.agents[i] - plan.calls[i] for i in span]
    phone = [sum(t.profile[i] for t in scenario.traffic if t.channel is Channel.PHONE)
             for i in span]
    email = [sum(t.profile[i] for t in scenario.traffic if t.channel is Channel.EMAIL)
             for i in span]
    call_target = min(plan.sl_share.values(), default=0.8)
    charts = [
        _chart("Agents planned (blue: for calls; orange: more for e-mail; line: call erlangs)",
               span, bars=[("calls", [plan.calls[i] for i in span]), ("email", email_extra)],
               lines=[("load", [plan.call_load[i] for i in span])]),
        _chart("Expected arrivals per interval (blue: calls; orange: e-mails)", span,
               lines=[("calls", phone), ("email", email)]),
        _chart(f"Simulated call service level (target {call_target:g}, red)", span,
               lines=[("calls", [calls_sl.get(i) for i in span])], top=1.0,
               target=call_target),
        _chart(f"Simulated e-mails answered by their deadline, by arrival (target "
               f"{plan.email_share:g}, red)", span,
               lines=[("email", [email_in_time.get(i) for i in span])], top=1.0,
               target=plan.email_share),
    ]
    verdicts = "".join(
        f"<tr><td>{_e(v['queue'])}</td><td>{_e(v['channel'])}</td><td>{_e(v['figure'])}</td>"
        f"<td>{v['target']:.3f}</td><td>{_num(v['simulated'])}</td>"
        f"<td class={'met' if v['met'] else 'miss'}>{'met' if v['met'] else 'NOT MET'}</td></tr>"
        for v in answer.verdicts())
    rows = "".join(
        f"<tr><td>{r['starts']}</td><td>{r['agents']}</td><td>{r['call_agents']}</td>"
        f"<td>{r['call_erlangs']:.1f}</td><td>{r['email_agents']:.1f}</td></tr>"
        for r in answer.as_dict()["intervals"])
    checked = answer.checked
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Staffing: {_e(scenario.name)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.met {{ color: #186a1e; }} .miss {{ color: #b22; font-weight: bold; }}
svg {{ display: block; margin: 4px 0 18px; }}
</style></head><body>
<h1>Staffing: {_e(scenario.name)}</h1>
<p>{plan.agent_hours:.1f} agent-hours a day, at most {max(plan.agents, default=0)} agents at
once. Checked on the simulator: the plan played for {checked.days} day(s) by {checked.agents}
blended agents (occupancy {checked.occupancy:.2f}).</p>
<table><tr><th>queue</th><th>channel</th><th>figure</th><th>target</th><th>simulated</th>
<th></th></tr>{verdicts}</table>
{"".join(charts)}
<h2>Plan per interval</h2>
<table><tr><th>interval</th><th>agents</th><th>for calls</th><th>call erlangs</th>
<th>for e-mail</th></tr>{rows}</table>
</body></html>
"""


def _arrivals(scenario: Scenario, i: int) -> float:
    return sum(t.profile[i] for t in scenario.traffic)


def _by_interval(answer: Staffing) -> tuple[dict[int, float], dict[int, float]]:
    """Per interval of the day, every simulated day together: the calls' service level and
    the share of e-mails answered by their deadline."""
    met: dict[tuple[str, int], float] = defaultdict(float)
    total: dict[tuple[str, int], float] = defaultdict(float)
    for row in answer.checked.intervals:
        i = row["interval"] % INTERVALS_PER_DAY
        if row["channel"] == Channel.PHONE.value and row["service_level"] is not None:
            settled = row["answered"] + row["abandoned"]
            met[("phone", i)] += row["service_level"] * settled
            total[("phone", i)] += settled
        elif row["channel"] == Channel.EMAIL.value and row["within_deadline"] is not None:
            counted = row["answered"] + row["overdue_at_end"]
            met[("email", i)] += row["within_deadline"] * counted
            total[("email", i)] += counted
    shares = {key: met[key] / n for key, n in total.items() if n}
    return ({i: v for (ch, i), v in shares.items() if ch == "phone"},
            {i: v for (ch, i), v in shares.items() if ch == "email"})


def _chart(title: str, span: range, bars: Sequence[tuple[str, Sequence[float]]] = (),
           lines: Sequence[tuple[str, Sequence[float | None]]] = (), top: float | None = None,
           target: float | None = None) -> str:
    """An SVG chart over the intervals of `span`: stacked bars and lines (None: a gap)."""
    n = max(1, len(span))
    stacked = [sum(v[k] for _, v in bars) for k in range(n)] if bars else [0.0]
    values = [x for _, v in lines for x in v if x is not None]
    high = top or max([*stacked, *values, 1e-9]) * 1.1
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / n

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / high)

    out = [f'<h3>{html.escape(title)}</h3><svg width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{html.escape(title)}">',
           f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" '
           f'stroke="#999"/>']
    for frac in (0, 0.5, 1):
        out.append(f'<text x="{LEFT - 6}" y="{y(high * frac) + 4:.1f}" font-size="11" '
                   f'text-anchor="end">{_tick(high * frac)}</text>')
    for k, i in enumerate(span):
        if i % 4 == 0:
            out.append(f'<text x="{LEFT + k * step:.1f}" y="{HEIGHT - 8}" font-size="11">'
                       f'{i // 4:02d}h</text>')
    out.extend(_bars(bars, n, step, y))
    out.extend(_lines(lines, step, y))
    if target is not None:
        out.append(f'<line x1="{LEFT}" y1="{y(target):.1f}" x2="{LEFT + plot_w}" '
                   f'y2="{y(target):.1f}" stroke="{COLOURS["target"]}" stroke-dasharray="4 3"/>')
    out.append("</svg>")
    return "\n".join(out)


def _bars(bars: Sequence[tuple[str, Sequence[float]]], n: int, step: float,
          y: Callable[[float], float]) -> list[str]:
    """Stacked bars, one stack per interval."""
    out, base = [], [0.0] * n
    for name, series in bars:
        for k, v in enumerate(series):
            if v > 0:
                out.append(f'<rect x="{LEFT + k * step + 1:.1f}" y="{y(base[k] + v):.1f}" '
                           f'width="{max(step - 2, 1):.1f}" '
                           f'height="{y(base[k]) - y(base[k] + v):.1f}" fill="{COLOURS[name]}"/>')
            base[k] += v
    return out


def _lines(lines: Sequence[tuple[str, Sequence[float | None]]], step: float,
           y: Callable[[float], float]) -> list[str]:
    """Polylines through the middle of each interval; None breaks a line."""
    out = []
    for name, series in lines:
        runs: list[list[str]] = [[]]
        for k, v in enumerate(series):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{LEFT + (k + 0.5) * step:.1f},{y(v):.1f}")
        out.extend(f'<polyline points="{" ".join(r)}" fill="none" stroke="{COLOURS[name]}" '
                   f'stroke-width="2"/>' for r in runs if r)
    return out


def _tick(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.0f}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _e(text: object) -> str:
    return html.escape(str(text))
