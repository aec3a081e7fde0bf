"""What the API's handlers call: the service objects of the edge context, by name, and the
conversion of their results to JSON values. A service this process lacks answers 503."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from .problems import Problem


@dataclass(frozen=True)
class Services:
    tasks: Any = None  # dispatcher.service.tasks.Tasks
    backoffice: Any = None  # dispatcher.service.backoffice.BackOffice (supervisors)
    history: Any = None  # dispatcher.service.history.History (an agent's customers)
    library: Any = None  # dispatcher.service.answers.Library
    reports: Any = None  # dispatcher.service.reports.Reports
    configuration: Any = None  # dispatcher.service.configuration.Configuration
    webhooks: Any = None  # dispatcher.service.webhooks.Webhooks

    @classmethod
    def of(cls, context: Any) -> Services:
        answers = getattr(context, "answers", None)
        return cls(tasks=getattr(context, "tasks", None),
                   backoffice=getattr(context, "backoffice", None),
                   history=getattr(context, "history", None),
                   library=getattr(answers, "library", None),
                   reports=getattr(context, "reports", None),
                   configuration=getattr(context, "configuration", None),
                   webhooks=getattr(context, "webhooks", None))

    def need(self, name: str) -> Any:
        service = getattr(self, name)
        if service is None:
            raise Problem(503, "not_available", f"{name} is not available on this server")
        return service


def plain(value: Any) -> Any:
    """A service result as JSON values: dataclasses as objects, tuples and sets as arrays,
    enums as their values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [plain(v) for v in value]
        return sorted(items) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
