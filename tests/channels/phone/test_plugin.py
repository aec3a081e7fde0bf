"""The phone edge as the runtime finds it: an entry point, settings, and a clear refusal when the
core does not hand it `calls`."""

from __future__ import annotations

import pytest

from channels.phone.config import PhoneSettings
from channels.phone.plugin import EDGE, build
from dispatcher.runtime.edges import discover
from dispatcher.service.edges import EdgeContext


def test_entry_point_and_settings():
    assert discover()["phone"] is EDGE
    assert EDGE.settings is PhoneSettings


def test_build_needs_calls():
    context = EdgeContext(reactor=None, intake=None, sessions=None, queries=None, roster=None,
                          assignment=None, site_root=None)
    with pytest.raises(RuntimeError, match="calls"):
        build(context, PhoneSettings(enabled=True))
