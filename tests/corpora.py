"""Public test corpora: where the tests find them, and what happens when they are not there.

The corpora are public data copied byte for byte from their sources (none of it is in this
repository): the RFC 4475 SIP torture messages, CPython's e-mail test messages and chasquid's
SMTP dialogs. Each is a folder named as below, looked for in order in
1. `$SWITCHBOARD_CORPORA/<name>`,
2. `../shared/corpora/<name>`, beside the checkout,
3. for the CPython e-mail messages only: `test/test_email/data` of the running interpreter's
   own `test` package, where it is installed (Debian: `libpython3.X-testsuite`).

Nothing here reads a file at import time: `find` is safe during collection (it only says
whether a folder is there), while `corpus` is called inside a test and, when the folder is
missing, skips with the reason, or fails under SWITCHBOARD_STRICT=1 (tests/support.py).
A parametrized test that lists a corpus' files at collection gets `MISSING_PARAMS` instead when
the corpus is absent: one case that calls `corpus` and so skips (or fails) with the reason.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.support import missing

RFC4475_SIP_TORTURE = "rfc4475-sip-torture"
CPYTHON_EMAIL_DATA = "cpython-email-data"
CHASQUID_SMTP_DIALOGS = "chasquid-smtp-dialogs"

ENV = "SWITCHBOARD_CORPORA"
CHECKOUT = Path(__file__).resolve().parents[1]
BESIDE_THE_CHECKOUT = CHECKOUT.parent / "shared" / "corpora"
MISSING_PARAMS = [pytest.param(None, id="corpus-missing")]


def roots() -> list[Path]:
    """The folders searched for every corpus, in order."""
    env = os.environ.get(ENV, "").strip()
    return ([Path(env)] if env else []) + [BESIDE_THE_CHECKOUT]


def interpreter_email_data() -> Path | None:
    """CPython's own e-mail test messages, when the interpreter's `test` package is installed
    (found without importing it)."""
    try:
        spec = importlib.util.find_spec("test")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        data = Path(location) / "test_email" / "data"
        if data.is_dir():
            return data
    return None


def find(name: str) -> Path | None:
    """The corpus folder `name`, or None; never reads a file, never skips."""
    for root in roots():
        if (root / name).is_dir():
            return root / name
    if name == CPYTHON_EMAIL_DATA:
        return interpreter_email_data()
    return None


def where(name: str) -> str:
    places = [str(r / name) for r in roots()]
    if name == CPYTHON_EMAIL_DATA:
        places.append("the interpreter's test/test_email/data")
    return ", ".join(places)


def corpus(name: str) -> Path:
    """The corpus folder `name`; missing: skip with the reason (fail when strict)."""
    found = find(name)
    if found is None:
        missing(f"public corpus {name!r} not found (looked in {where(name)}; "
                f"set {ENV} to the folder that holds it)")
    return found


def files(name: str, pattern: str = "*") -> list[Path]:
    """The corpus' files matching `pattern`, sorted ([] when it is missing)."""
    found = find(name)
    return sorted(p for p in found.glob(pattern) if p.is_file()) if found else []
