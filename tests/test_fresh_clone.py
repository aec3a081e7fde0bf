"""A fresh clone passes: the repository's HEAD, cloned into an empty temporary folder with
nothing beside it (no `../shared`, so no corpora; SWITCHBOARD_STRICT and SWITCHBOARD_CORPORA
unset), collects the whole suite with the current interpreter without an error. What is
missing there makes tests skip when they run (tests/corpora.py, tests/support.py); collection
itself must never depend on it.

It checks what is committed (HEAD), not the working tree. No git, or a checkout that is not a
git repository: skip with the reason (fail under SWITCHBOARD_STRICT=1). Not marked slow: it
runs with the normal suite (a local clone and one collection, seconds).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import missing

CHECKOUT = Path(__file__).resolve().parents[1]
CLONE_TIMEOUT_SECONDS = 120
COLLECT_TIMEOUT_SECONDS = 240
# Settings of one machine that must not reach the clone (the test database's URL may).
DROPPED_SETTINGS = ("SWITCHBOARD_STRICT", "SWITCHBOARD_CORPORA")


def git_checkout() -> str:
    git = shutil.which("git")
    if git is None:
        missing("git is not installed: cannot clone the repository")
    inside = subprocess.run([git, "-C", str(CHECKOUT), "rev-parse", "--is-inside-work-tree"],
                            capture_output=True, text=True)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        missing(f"{CHECKOUT} is not a git repository: nothing to clone")
    return git


def test_a_fresh_clone_collects_the_suite(tmp_path: Path) -> None:
    git = git_checkout()
    clone = tmp_path / "alone" / "switchboard"  # tmp_path/alone holds nothing else
    subprocess.run([git, "clone", "--quiet", str(CHECKOUT), str(clone)], check=True,
                   capture_output=True, timeout=CLONE_TIMEOUT_SECONDS)
    assert sorted(p.name for p in clone.parent.iterdir()) == ["switchboard"]
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_SETTINGS}
    env["PYTHONPATH"] = str(clone)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=COLLECT_TIMEOUT_SECONDS)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert not re.search(r"^(ERROR|E  )", out, re.M), out[-6000:]
    collected = re.search(r"(\d+) tests? collected", out)
    assert collected and int(collected.group(1)) > 0, out[-2000:]
