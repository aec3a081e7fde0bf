"""`/api/v1/answers` (the library of standard answers, read) and `/api/v1/reports` (the
figures of a period, as dispatcher/service/reports.py computes them)."""

from __future__ import annotations

from typing import Any

from dispatcher.domain.errors import DomainError
from dispatcher.domain.metrics import INTERVALS
from dispatcher.service.access import roles_for
from dispatcher.service.answers import answer_json
from dispatcher.service.reports import parse_interval, parse_time, report_data

from . import schemas as s
from .problems import Problem
from .routes import Call, Param, Route
from .services import Services

ANSWERS = roles_for("answers.read")


class NoSuchAnswer(DomainError):
    code = "unknown_answer"


async def list_answers(services: Services, call: Call) -> Any:
    library = services.need_library()
    retired = bool(call.params.get("retired")) and call.role == "supervisor"
    return [answer_json(a) for a in library.list_answers(retired)]


async def show_answer(services: Services, call: Call) -> Any:
    answer = services.need_library().get(call.params["id"])
    if answer is None or (answer.retired and call.role != "supervisor"):
        raise NoSuchAnswer(f"no such answer: {call.params['id']}")
    return answer_json(answer)


async def report(services: Services, call: Call) -> Any:
    p = call.params
    try:
        start, end = parse_time(p["from"]), parse_time(p["to"])
    except DomainError as exc:
        raise Problem(400, "invalid_value", str(exc)) from None
    built = await services.need_reports().build(start, end, parse_interval(
        p.get("interval", "1h")), p.get("queue"))
    return report_data(built)


ROUTES = [
    Route("GET", "/answers", "The library of standard answers", ANSWERS, list_answers,
          s.array(s.ref("Answer")),
          params=(Param("retired", "query", {"type": "boolean", "default": False},
                        "include retired answers (supervisors)"),), tag="answers"),
    Route("GET", "/answers/{id}", "One standard answer", ANSWERS, show_answer, s.ref("Answer"),
          params=(Param("id", "path", s.ID, required=True),), tag="answers"),
    Route("GET", "/reports", "The figures of a period", roles_for("reports.read"), report, s.ref("Report"),
          params=(
              Param("from", "query", {"type": "string", "minLength": 1, "maxLength": 40},
                    "ISO 8601 date or date-time (no zone: UTC), or epoch seconds",
                    required=True),
              Param("to", "query", {"type": "string", "minLength": 1, "maxLength": 40},
                    "end of the period (excluded)", required=True),
              Param("interval", "query", {"type": "string", "enum": sorted(INTERVALS),
                                          "default": "1h"}),
              Param("queue", "query", {"type": "string", "maxLength": 200}),
          ), tag="reports"),
]
