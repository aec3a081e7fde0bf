"""Fixtures of the e-mail edge suites: a dispatcher with the e-mail edge in a subprocess
(running.py), on a SQLite file, shared by a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.channels.email import running


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[running.Server]:
    url = f"sqlite:///{tmp_path_factory.mktemp('mail') / 'switchboard.db'}"
    s = running.start(url, max_message_bytes=1_048_576, domains="example.com",
                      recipients=running.ROUTES + ",user@testserver=support",
                      default_queue="support")
    yield s
    s.stop()
