"""Every route of the API, in the order the OpenAPI document lists them."""

from __future__ import annotations

from . import callbacks, configuration, customers, library, tasks, webhooks
from .routes import Route


def routes() -> list[Route]:
    found: list[Route] = []
    for module in (tasks, callbacks, configuration, customers, library, webhooks):
        found.extend(module.ROUTES)
    return found
