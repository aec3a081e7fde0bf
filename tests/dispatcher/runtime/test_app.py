"""The runtime's composition root (dispatcher/runtime/app.py): what starting its Storage does to
the process."""

from __future__ import annotations

import sys

import pytest

from dispatcher.runtime.app import Storage
from dispatcher.storage.pool import SWITCH_INTERVAL
from tests.dispatcher.storage.turns import TurnReactor


def test_starting_the_storage_shortens_the_interpreter_switch_interval(tmp_path) -> None:
    """serve's database threads take the interpreter lock back after SWITCH_INTERVAL at most
    behind a busy reactor (storage/pool.py), set when its Storage starts, not when it is made."""
    sys.setswitchinterval(0.005)  # put back after the test: tests/conftest.py
    storage = Storage(f"sqlite:///{tmp_path / 'sb.db'}", TurnReactor())
    assert sys.getswitchinterval() == pytest.approx(0.005)
    storage.start()
    try:
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
    finally:  # the pool's threads would keep the process alive
        storage.pool.stop()
        storage.engine.dispose()
