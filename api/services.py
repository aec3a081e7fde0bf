"""What the API's handlers call: the service objects the plugin hands over, and the
conversion of their results to JSON values. A service this process lacks answers 503."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, TypeVar

from dispatcher.service.answers import Library
from dispatcher.service.backoffice import BackOffice
from dispatcher.service.callbacks import Callbacks
from dispatcher.service.configuration import Configuration
from dispatcher.service.history import History
from dispatcher.service.reports import Reports
from dispatcher.service.tasks import Tasks
from dispatcher.service.webhooks import Webhooks

from .problems import Problem

S = TypeVar("S")


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
    callbacks: Callbacks | None = None  # phone callbacks (with the phone channel's calls)

    # Typed access for the routes: the service, or the 503 Problem when this process lacks it.

    def need_tasks(self) -> Tasks:
        return needed(self.tasks, "tasks")

    def need_backoffice(self) -> BackOffice:
        return needed(self.backoffice, "backoffice")

    def need_history(self) -> History:
        return needed(self.history, "history")

    def need_library(self) -> Library:
        return needed(self.library, "library")

    def need_reports(self) -> Reports:
        return needed(self.reports, "reports")

    def need_configuration(self) -> Configuration:
        return needed(self.configuration, "configuration")

    def need_webhooks(self) -> Webhooks:
        return needed(self.webhooks, "webhooks")

    def need_callbacks(self) -> Callbacks:
        return needed(self.callbacks, "callbacks")


def needed(service: S | None, name: str) -> S:
    """`service`, or a 503 Problem naming it when this process runs without it."""
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
