"""Errors as RFC 9457 problem details (`application/problem+json`): what the API answers for
every refusal and failure, and the translation of the service layer's errors into them.

`Problem` is raised by the edge's own checks; `from_error` maps a DomainError by its class
(unknown things 404, refusals 403, conflicts 409, bad values 400). Anything else is a 500 whose
detail is an incident id (the single log line about it has the trace); never a traceback."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from dispatcher.domain.errors import (
    AgentDisabled,
    DomainError,
    DuplicateTask,
    Forbidden,
    IllegalTransition,
    InUse,
    InvalidValue,
    NotEligible,
    OfferNotCurrent,
    QueueDisabled,
    UnknownAgent,
    UnknownDelivery,
    UnknownQueue,
    UnknownSubscription,
    UnknownTask,
)
from dispatcher.service.accounts import AccountDisabled, UnknownAccount

CONTENT_TYPE = b"application/problem+json"
TYPE_PREFIX = "urn:switchboard:problem:"


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra

    def document(self, instance: str) -> dict[str, Any]:
        return {"type": TYPE_PREFIX + self.code, "title": HTTPStatus(self.status).phrase,
                "status": self.status, "detail": self.detail, "instance": instance,
                **self.extra}

    def body(self, instance: str) -> bytes:
        return json.dumps(self.document(instance)).encode()


_NOT_FOUND = (UnknownTask, UnknownAgent, UnknownQueue, UnknownSubscription, UnknownDelivery)
_CONFLICT = (IllegalTransition, InUse, DuplicateTask, OfferNotCurrent, NotEligible,
             AgentDisabled)


def from_error(exc: DomainError) -> Problem:
    """The problem a service's refusal becomes (the message is the service's, safe to show)."""
    code = getattr(exc, "code", "domain_error")
    if isinstance(exc, (Forbidden, AccountDisabled, UnknownAccount)):
        return Problem(403, code, str(exc))
    if isinstance(exc, QueueDisabled):
        return Problem(409, code, str(exc))
    if isinstance(exc, _NOT_FOUND) or code.startswith("unknown_") or code == "not_found":
        return Problem(404, code, str(exc))
    if isinstance(exc, _CONFLICT) or code in ("in_use", "conflict"):
        return Problem(409, code, str(exc))
    if isinstance(exc, InvalidValue):
        return Problem(400, code, str(exc))
    if code == "not_available":
        return Problem(503, code, str(exc))
    return Problem(400, code, str(exc))
