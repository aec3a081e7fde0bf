"""The context the runtime gives the admin edge's commands (dispatcher/runtime/app.py
`CommandServices`), built over a test wiring (tests/dispatcher/storage/wiring.py): the same
services, on the stores given (None: a store the command does not use)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import ensureDeferred

from dispatcher.runtime.app import CommandServices
from dispatcher.service.edges import EdgeCommandContext
from tests.dispatcher.storage.wiring import Wiring


def command_context(w: Wiring, answers: Any = None, codes: Any = None,
                    phones: Any = None) -> EdgeCommandContext:
    storage = SimpleNamespace(url=None, store=w.store, answers=answers, codes=codes,
                              phones=phones, revocations=None, accounts=None, secrets=None)
    return w.wait(ensureDeferred(CommandServices(storage, w.reactor).context(
        token_secret=False)))
