"""Report views: a service `Report` (dispatcher.service.reports) as text, CSV, JSON or HTML
(with inline SVG plots drawn here, no script).

Sits in the admin edge, next to `switchboard report` (report.py) and `GET /report`
(report_page.py); the service layer computes the figures and never renders. What it promises:
`render(report, format)` gives the document; every format prints the same figures from the same
`Figures`, formatted by `show`, so they cannot disagree; an unknown format is an InvalidValue.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.metrics import (
    DAY,
    EMAIL_RESPONSE_EDGES,
    HOUR,
    PHONE_WAIT_EDGES,
)
from dispatcher.service.reports import Report, interval_name, report_data

FORMATS = ("text", "csv", "json", "html")
DEFAULT_INTERVAL = "1h"  # of `switchboard report` and GET /report
CONTENT_TYPES = {
    "text": "text/plain; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "html": "text/html; charset=utf-8",
}


# ---------------------------------------------------------------------- formatting

RATIOS = ("service_level", "ack_share", "abandon_rate", "occupancy", "reopen_rate:",
          "sl_target", "sla_compliance")
DURATIONS = ("first_response_", "response_", "answer_wait_", "abandon_wait_", "talk_",
             "handle_")
SPANS = ("logged_in", "on_break", "occupied")


def show(metric: str, value: float | None) -> str:
    """A figure as people read it (text and HTML): ratios in percent, durations h:mm:ss,
    counts as integers; '-' when there is none. Never contains a space."""
    if value is None:
        return "-"
    if metric == "sla_met":
        return "yes" if value else "no"
    if metric.startswith(RATIOS):
        return f"{value * 100:.1f}%"
    if metric.startswith(SPANS) or (metric.startswith(DURATIONS) and not metric.endswith("_n")
                                    and "_le_" not in metric and "_gt_" not in metric):
        return duration(value)
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}"


def duration(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    total = round(abs(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h}:{m:02d}:{s:02d}"


def when(t: float, interval: float = HOUR) -> str:
    d = datetime.fromtimestamp(t, UTC)
    return d.strftime("%Y-%m-%d" if interval >= DAY else "%Y-%m-%d %H:%M")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Column:
    metric: str  # may hold "{x}", replaced by the row's `x`
    label: str


@dataclass(frozen=True, slots=True)
class TableRow:
    label: str
    scope: str
    key: str
    bucket: int | None = None
    x: str = ""


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: tuple[TableRow, ...]


def _c(*pairs: tuple[str, str]) -> tuple[Column, ...]:
    return tuple(Column(m, label) for m, label in pairs)


def tables(report: Report) -> list[Table]:
    """The tables of the text and HTML reports (the same ones, so they agree)."""
    f = report.figures
    queues = f.keys("queue")
    qc = f.keys("queue_channel")
    out = [
        Table("Service level", _c(("sl_total", "settled"), ("sl_met", "met"),
                                  ("service_level", "service level"), ("overdue", "overdue"),
                                  ("sl_target", "target"), ("sla_met", "target met"),
                                  ("sla_compliance", "intervals met")),
              (TableRow("all", "all", ""),
               *(TableRow(f"channel {k}", "channel", k) for k in f.keys("channel")),
               *(TableRow(f"queue {k}", "queue", k) for k in queues),
               *(TableRow(k, "queue_channel", k) for k in qc),
               *(TableRow(f"deadline {k}", "deadline", k) for k in f.keys("deadline")))),
        Table("E-mail", _c(("email_requests", "requests"), ("emails_received", "received"),
                           ("replies", "replies"), ("acks", "acks"),
                           ("ack_share", "auto-acked"), ("emails_sent", "sent"),
                           ("first_response_avg", "1st avg"), ("first_response_min", "1st min"),
                           ("first_response_max", "1st max"), ("response_avg", "all avg"),
                           ("response_min", "all min"), ("response_max", "all max"),
                           ("closed_without_reply", "no reply"),
                           ("interactions_avg", "interactions")),
              (TableRow("all e-mail", "channel", "email"),
               *(TableRow(k, "queue_channel", k) for k in qc if k.endswith("/email")))),
        Table("Phone", _c(("calls_offered", "offered"), ("calls_answered", "answered"),
                          ("calls_abandoned", "abandoned"), ("abandon_rate", "abandon rate"),
                          ("answer_wait_avg", "wait avg"), ("answer_wait_max", "wait max"),
                          ("abandon_wait_avg", "abandon after avg"),
                          ("abandon_wait_max", "abandon after max"), ("talk_avg", "talk avg")),
              (TableRow("all calls", "channel", "phone"),
               *(TableRow(k, "queue_channel", k) for k in qc if k.endswith("/phone")))),
        Table("Callbacks", _c(("callbacks_requested", "requested"),
                              ("callback_attempts", "attempts"),
                              ("callbacks_reached", "reached"),
                              ("callback_no_answers", "no answer"),
                              ("callback_retries", "retries"),
                              ("callbacks_not_reached", "not reached")),
              (TableRow("all", "all", ""), *(TableRow(f"queue {k}", "queue", k)
                                             for k in queues))),
        Table("Tasks and offers", _c(("tasks_arrived", "arrived"), ("tasks_handled", "handled"),
                                     ("handle_avg", "handle avg"), ("offers_made", "offers"),
                                     ("offers_accepted", "accepted"),
                                     ("offers_rejected", "rejected"),
                                     ("offers_expired", "expired"),
                                     ("review_score_avg", "review %")),
              (TableRow("all", "all", ""), *(TableRow(f"queue {k}", "queue", k)
                                             for k in queues))),
        Table("Agents", _c(("logged_in", "logged in"), ("on_break", "break"),
                           ("occupied", "occupied"), ("occupancy", "occupancy"),
                           ("tasks_handled", "handled"), ("tasks_per_hour", "per hour"),
                           ("handle_avg", "handle avg"), ("replies", "replies"),
                           ("offers_rejected", "rejected"), ("offers_expired", "missed"),
                           ("review_score_avg", "review %"), ("talk_avg", "talk avg")),
              tuple(TableRow(a, "agent", a) for a in f.keys("agent"))),
    ]
    period = f.cell()
    modes = sorted(k[5:] for k in period.counts if k.startswith("mode:"))
    if modes:
        out.append(Table("Response modes", _c(("mode:{x}", "replies"),
                                              ("reopened:{x}", "reopened"),
                                              ("reopen_rate:{x}", "reopen rate")),
                         tuple(TableRow(m, "all", "", None, m) for m in modes)))
    categories = sorted(k[9:] for k in period.counts if k.startswith("category:"))
    if categories:
        out.append(Table("Categories", _c(("category:{x}", "tasks")),
                         tuple(TableRow(c, "all", "", None, c) for c in categories)))
    out.append(Table(
        f"By interval ({interval_name(report.interval)})",
        _c(("tasks_arrived", "arrived"), ("tasks_handled", "handled"),
           ("calls_offered", "calls"), ("calls_answered", "answered"),
           ("calls_abandoned", "abandoned"), ("emails_received", "e-mails in"),
           ("replies", "replies"), ("service_level", "service level"),
           ("depth_end", "waiting at end")),
        tuple(TableRow(when(f.bucket_start(b), report.interval), "all", "", b)
              for b in f.buckets)))
    return out


def cell_value(report: Report, row: TableRow, column: Column) -> tuple[str, float | None]:
    metric = column.metric.replace("{x}", row.x)
    return metric, report.figures.cell(row.scope, row.key, row.bucket).value(metric)


def _so_far(report: Report) -> str:
    """Said when the period runs into the future: the figures stop at the report's time."""
    if report.until >= report.end:
        return ""
    return f"; counted up to {iso(report.until)} (the rest of the period has not happened yet)"


def _title(report: Report) -> str:
    scope = f"queue {report.queue}" if report.queue else "all queues"
    return (f"Switchboard report {when(report.start)} to {when(report.end)} UTC, {scope}, "
            f"by {interval_name(report.interval)}")


# ---------------------------------------------------------------------- renderers


def render(report: Report, fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidValue(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return {"text": render_text, "csv": render_csv, "json": render_json,
            "html": render_html}[fmt](report)


def render_text(report: Report) -> str:
    lines = [_title(report), f"{report.events} events read; generated {iso(report.generated_at)}"
             + _so_far(report), ""]
    for table in tables(report):
        if not table.rows:
            continue
        head = ["", *(c.label for c in table.columns)]
        body = [[r.label, *(show(*cell_value(report, r, c)) for c in table.columns)]
                for r in table.rows]
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
        lines.append(table.title)
        for row in [head, *body]:
            lines.append("  " + "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths,
                                                                                     strict=True))
            ).rstrip())
        lines.append("")
    return "\n".join(lines)


def render_csv(report: Report) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["from", "to", "scope", "key", "metric", "value"])
    f = report.figures
    for r in f.rows():
        start = r.start
        end = report.end if r.bucket is None else min(report.end, start + report.interval)
        w.writerow([iso(start), iso(end), r.scope, r.key, r.metric,
                    "" if r.value is None else repr(r.value)])
    return out.getvalue()


def render_json(report: Report) -> str:
    doc = report_data(report, iso)
    head = doc["report"]
    doc["report"] = {"from": head["from"], "to": head["to"], "from_epoch": report.start,
                     "to_epoch": report.end, "interval": head["interval"],
                     "queue": head["queue"], "events": head["events"],
                     "generated_at": head["generated_at"], "until": head["until"],
                     "until_epoch": report.until}
    return json.dumps(doc, allow_nan=False)  # no indent: the C encoder (10x faster)


def render_html(report: Report) -> str:
    e = html.escape
    title = _title(report)
    parts = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p class=\"meta\">{report.events} events read; generated "
        f"{e(iso(report.generated_at))}{e(_so_far(report))}</p>",
        "<section class=\"plots\">", *plots(report), "</section>",
    ]
    for table in tables(report):
        if not table.rows:
            continue
        parts.append(f"<h2>{e(table.title)}</h2><table><thead><tr><th></th>")
        parts += [f"<th>{e(c.label)}</th>" for c in table.columns]
        parts.append("</tr></thead><tbody>")
        for r in table.rows:
            parts.append(f"<tr><th>{e(r.label)}</th>")
            for c in table.columns:
                metric, value = cell_value(report, r, c)
                parts.append(f"<td data-scope=\"{e(r.scope)}\" data-key=\"{e(r.key)}\" "
                             f"data-bucket=\"{'' if r.bucket is None else r.bucket}\" "
                             f"data-metric=\"{e(metric)}\">{e(show(metric, value))}</td>")
            parts.append("</tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "".join(parts)


_CSS = (
    "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
    "tbody th{text-align:left;font-weight:normal}"
    ".plots{display:flex;flex-wrap:wrap;gap:1em}"
    ".plots figure{margin:0}.meta{color:#666}"
    "svg text{font:11px system-ui,sans-serif;fill:#333}"
)

# ---------------------------------------------------------------------- plots (inline SVG)

PLOT_W, PLOT_H = 520, 220
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 48, 12, 24, 40
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
MAX_SERIES = 6


def plots(report: Report) -> list[str]:
    """The plots: the axis spans the whole period; the series stop at the last interval that
    has begun (nothing is drawn for the future)."""
    f = report.figures
    labels = [when(f.bucket_start(b), report.interval) for b in range(_period_buckets(report))]
    out = []
    sl = [("all", [f.cell("all", "", b).value("service_level") for b in f.buckets])]
    sl += [(ch, [f.cell("channel", ch, b).value("service_level") for b in f.buckets])
           for ch in f.keys("channel")]
    out.append(line_plot("Service level through the period", labels,
                         [(n, [None if v is None else v * 100 for v in vs]) for n, vs in sl],
                         100.0, "%"))
    depth = [(q, [f.cell("queue", q, b).value("depth_end") for b in f.buckets])
             for q in f.keys("queue")[:MAX_SERIES]]
    out.append(line_plot("Queue depth (waiting at end of interval)", labels, depth, None, ""))
    out.append(bar_plot("Arrivals vs handled", labels,
                        [("arrived", [f.cell("all", "", b).value("tasks_arrived") or 0
                                      for b in f.buckets]),
                         ("handled", [f.cell("all", "", b).value("tasks_handled") or 0
                                      for b in f.buckets])]))
    period = f.cell()
    out.append(bar_plot("Calls: wait before answer", _edge_labels(PHONE_WAIT_EDGES, "s"),
                        [("calls", _bins(period.values(), "answer_wait", PHONE_WAIT_EDGES))]))
    out.append(bar_plot("E-mails: time to first answer",
                        _edge_labels(tuple(x / 3600 for x in EMAIL_RESPONSE_EDGES), "h"),
                        [("requests", _bins(period.values(), "first_response",
                                            EMAIL_RESPONSE_EDGES))]))
    return out


def _period_buckets(report: Report) -> int:
    return max(1, math.ceil((report.end - report.start) / report.interval - 1e-9))


def _edge_labels(edges: tuple[float, ...], unit: str) -> list[str]:
    return [f"≤{x:g}{unit}" for x in edges] + [f">{edges[-1]:g}{unit}"]


def _bins(values: dict[str, float | None], name: str, edges: tuple[float, ...]) -> list[float]:
    out = [values.get(f"{name}_le_{x:g}") or 0 for x in edges]
    return out + [values.get(f"{name}_gt_{edges[-1]:g}") or 0]


def _frame(title: str, labels: list[str], y_max: float, unit: str) -> list[str]:
    e = html.escape
    inner_h = PLOT_H - MARGIN_T - MARGIN_B
    parts = [f"<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{PLOT_W}\" "
             f"height=\"{PLOT_H}\" viewBox=\"0 0 {PLOT_W} {PLOT_H}\" role=\"img\" "
             f"aria-label=\"{e(title)}\"><text x=\"{MARGIN_L}\" y=\"14\">{e(title)}</text>"]
    for i in range(5):
        y = MARGIN_T + inner_h * i / 4
        value = y_max * (4 - i) / 4
        parts.append(f"<line x1=\"{MARGIN_L}\" x2=\"{PLOT_W - MARGIN_R}\" y1=\"{y:.1f}\" "
                     f"y2=\"{y:.1f}\" stroke=\"#eee\"/><text x=\"{MARGIN_L - 4}\" "
                     f"y=\"{y + 4:.1f}\" text-anchor=\"end\">{value:g}{e(unit)}</text>")
    step = max(1, math.ceil(len(labels) / 8))
    inner_w = PLOT_W - MARGIN_L - MARGIN_R
    for i in range(0, len(labels), step):
        x = MARGIN_L + inner_w * (i + 0.5) / max(1, len(labels))
        parts.append(f"<text x=\"{x:.1f}\" y=\"{PLOT_H - MARGIN_B + 14}\" "
                     f"text-anchor=\"middle\">{e(labels[i][-5:])}</text>")
    return parts


def _legend(names: list[str]) -> list[str]:
    e = html.escape
    out = []
    for i, name in enumerate(names):
        x = MARGIN_L + i * 90
        out.append(f"<rect x=\"{x}\" y=\"{PLOT_H - 14}\" width=\"10\" height=\"10\" "
                   f"fill=\"{PALETTE[i % len(PALETTE)]}\"/><text x=\"{x + 14}\" "
                   f"y=\"{PLOT_H - 5}\">{e(name)}</text>")
    return out


def _nice(top: float) -> float:
    """A round top for an axis of four steps (counts: whole steps)."""
    if top <= 0:
        return 4.0
    if top <= 40 and float(top).is_integer():
        return float(4 * math.ceil(top / 4))
    magnitude = 10 ** math.floor(math.log10(top))
    for m in (1, 2, 2.5, 5, 10):
        if m * magnitude >= top:
            return m * magnitude
    return 10 * magnitude


def line_plot(title: str, labels: list[str], series: list[tuple[str, list[float | None]]],
              y_max: float | None, unit: str) -> str:
    top = y_max or _nice(max((v for _, vs in series for v in vs if v is not None), default=0))
    parts = _frame(title, labels, top, unit)
    inner_w = PLOT_W - MARGIN_L - MARGIN_R
    inner_h = PLOT_H - MARGIN_T - MARGIN_B
    n = max(1, len(labels))
    for i, (_, values) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        path, dots, pen = [], [], "M"
        for j, v in enumerate(values):
            if v is None:
                pen = "M"
                continue
            x = MARGIN_L + inner_w * (j + 0.5) / n
            y = MARGIN_T + inner_h * (1 - min(v, top) / top)
            path.append(f"{pen}{x:.1f},{y:.1f}")
            dots.append(f"<circle cx=\"{x:.1f}\" cy=\"{y:.1f}\" r=\"2.5\" fill=\"{color}\">"
                        f"<title>{html.escape(labels[j])}: {v:g}{html.escape(unit)}</title>"
                        f"</circle>")
            pen = "L"
        if path:
            parts.append(f"<path d=\"{' '.join(path)}\" fill=\"none\" stroke=\"{color}\" "
                         f"stroke-width=\"2\"/>")
            parts += dots
    parts += _legend([name for name, _ in series])
    parts.append("</svg></figure>")
    return "".join(parts)


def bar_plot(title: str, labels: list[str], series: list[tuple[str, list[float]]]) -> str:
    top = _nice(max((v for _, vs in series for v in vs), default=0))
    parts = _frame(title, labels, top, "")
    inner_w = PLOT_W - MARGIN_L - MARGIN_R
    inner_h = PLOT_H - MARGIN_T - MARGIN_B
    n = max(1, len(labels))
    slot = inner_w / n
    width = slot * 0.8 / max(1, len(series))
    for i, (_, values) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        for j, v in enumerate(values):
            h = inner_h * (v / top)
            x = MARGIN_L + slot * j + slot * 0.1 + width * i
            parts.append(f"<rect x=\"{x:.1f}\" y=\"{MARGIN_T + inner_h - h:.1f}\" "
                         f"width=\"{max(width, 0.5):.1f}\" height=\"{h:.1f}\" "
                         f"fill=\"{color}\"><title>{html.escape(labels[j])}: {v:g}</title>"
                         f"</rect>")
    parts += _legend([name for name, _ in series])
    parts.append("</svg></figure>")
    return "".join(parts)
