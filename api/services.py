"""What the API's handlers call: the service objects the plugin hands over, and the
conversion of their results to JSON values. A service this process lacks answers 503."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from dispatcher.service.answers import Library
from dispatcher.service.backoffice import BackOffice
from dispatcher.service.configuration import Configuration
from dispatcher.service.history import History
from dispatcher.service.reports import Reports
from dispatcher.service.tasks import Tasks
from dispatcher.service.webhooks import Webhooks

from .problems import Problem


@dataclass(frozen=True)
class Services:
    """The services the routes call (the plugin fills it from the runtime's context); one this
    process runs without is None, and its routes answer 503."""

    tasks: Tasks | None = None
    backoffice: BackOffice | None = None  # supervisors
    history: History | None = None  # an agent's customers
    library: Library | None = None
    reports: Reports | None = None
    configuration: Configuration | None = None
    webhooks: Webhooks | None = None

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
