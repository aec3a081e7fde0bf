"""Fixtures of the service suites (helpers in stacks.py)."""

from __future__ import annotations

import pytest

from tests.dispatcher.service.stacks import Stack, build_stack, support_queue


@pytest.fixture
def stack() -> Stack:
    s = build_stack()
    s.put_queue(support_queue())
    return s
