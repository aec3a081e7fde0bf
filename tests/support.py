"""Test helpers shared by every suite: the strict-mode rule for missing peers, and stopping a
peer's process.

A test that needs a binary or a server that is not there calls `missing(reason)`: it skips with
the reason, except under SWITCHBOARD_STRICT=1 (CI sets it), where it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

STRICT = os.environ.get("SWITCHBOARD_STRICT") == "1"
PG_URL = os.environ.get(
    "SWITCHBOARD_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SWITCHBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def missing(reason: str) -> None:
    """Skip (or, in strict mode, fail) because a peer the test needs is missing."""
    if STRICT:
        pytest.fail(f"SWITCHBOARD_STRICT=1 and a required peer is missing: {reason}")
    pytest.skip(reason)


def need_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed")
    return path


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if `proc` is still there after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
