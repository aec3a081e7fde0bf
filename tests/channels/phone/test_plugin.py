"""The phone edge as the runtime finds it: an entry point, settings, and a clear refusal when the
core does not hand it `calls`."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from channels.phone.config import PhoneSettings
from channels.phone.plugin import EDGE, build
from dispatcher.domain.routing import Router
from dispatcher.runtime.edges import discover
from dispatcher.service.assignment import Assignment
from dispatcher.service.configuration import Configuration
from dispatcher.service.edges import EdgeContext
from dispatcher.service.intake import Intake
from dispatcher.service.queries import Queries
from dispatcher.service.sessions import Sessions
from dispatcher.storage.memory import MemoryStore


def test_entry_point_and_settings():
    assert discover()["phone"] is EDGE
    assert EDGE.settings is PhoneSettings


def test_build_needs_calls():
    clock, store, router = Clock(), MemoryStore(), Router()
    assignment = Assignment(router, store, clock)
    context = EdgeContext(reactor=clock, intake=Intake(assignment, store, clock),
                          sessions=Sessions(assignment), queries=Queries(router, store),
                          configuration=Configuration(store, clock, assignment=assignment),
                          assignment=assignment,
                          site_root=Resource())  # no `calls`
    with pytest.raises(RuntimeError, match="calls"):
        build(context, PhoneSettings(enabled=True))
