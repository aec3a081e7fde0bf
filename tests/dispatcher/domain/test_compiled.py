"""The optional compiled router (bench/compile.py, `./dev compile`): when a build sits in this
tree, it is what Python imports and it was built from the sources as they are now (a stale
build would run old code in place of the edited .py files, silently). Its modules stay within
what mypyc compiles: the type check the build starts with passes (when mypy, the `compiled`
extra, is installed).

Without a build (the default) the first test checks that the .py files are what runs: the suite
then runs pure Python. With one, the whole suite runs the compiled modules; both must pass. mypy
is in the `test` extra too, so the type check runs in every test run."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _build_script():
    spec = importlib.util.spec_from_file_location("switchboard_compile", ROOT / "bench" /
                                                  "compile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _build_script()


def test_a_compiled_build_in_the_tree_is_what_runs_and_is_current():
    if not build.artefacts(ROOT):  # the default: the .py files run
        for name in build.MODULES:
            module = importlib.import_module(f"{build.PACKAGE}.{name}")
            assert module.__file__.endswith(".py"), module.__file__
        assert not (ROOT / build.MANIFEST).exists(), "a build's manifest without its modules"
        return
    for name in build.MODULES:
        module = importlib.import_module(f"{build.PACKAGE}.{name}")
        assert module.__file__.endswith(build.SUFFIXES), (
            f"{module.__name__} runs from {module.__file__}, not from the compiled build")
    assert build.stale(ROOT) == [], (
        "compiled modules built from older sources: rebuild (./dev compile) or remove the "
        "build (./dev compile --clean)")


def test_a_build_whose_sources_changed_is_stale(tmp_path):
    """The staleness check itself, on a copy of the compiled modules' sources (no C built)."""
    pkg = tmp_path.joinpath(*build.PACKAGE.split("."))
    pkg.mkdir(parents=True)
    for source in build.sources(ROOT):
        (pkg / source.name).write_bytes(source.read_bytes())
    assert build.stale(tmp_path) == [f"{build.PACKAGE}.{m}" for m in build.MODULES]  # no manifest
    manifest = {"modules": {f"{build.PACKAGE}.{m}": build.digest(p)
                            for m, p in zip(build.MODULES, build.sources(tmp_path), strict=True)}}
    (tmp_path / build.MANIFEST).write_text(json.dumps(manifest))
    assert build.stale(tmp_path) == []
    edited = build.sources(tmp_path)[-1]
    edited.write_text(edited.read_text() + "\n# edited after the build\n")
    assert build.stale(tmp_path) == [f"{build.PACKAGE}.{build.MODULES[-1]}"]


def test_the_compiled_modules_pass_the_type_check_the_build_starts_with():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy (the `compiled` extra) is not installed")
    paths = [str(p.relative_to(ROOT)) for p in build.sources(ROOT)]
    done = subprocess.run([sys.executable, "-m", "mypy", *build.MYPY_OPTIONS, "--cache-dir",
                           os.devnull, *paths], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
