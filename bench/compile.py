"""The optional compiled build of the router: dispatcher/domain's routing modules compiled to C
extension modules with mypyc, built in place next to their .py files (`./dev compile`), removed
with `--clean`. Pure Python stays the default: the product never imports this script (only
tests/dispatcher/domain/test_compiled.py reads its names), `./dev test` and CI
never build, and a tree without the extension modules runs its .py files.

What is compiled: MODULES, the router and the agents it reads on every decision; what pays and
no more (bench/routing.py, per CPU second: compiling offers.py and events.py as well changed
nothing measurable, compiling queues.py as well was 12-16 % slower, as its compiled code boxes
and unboxes the floats it hands the router). tasks.py stays interpreted: a Task's `attributes`
is a property put on the class after it is made, which a compiled class cannot take. Python
imports an extension module in preference to the .py beside it, so with the build in place
`from dispatcher.domain.routing import Router` is the compiled router everywhere (service,
tests, benchmarks).

Staleness. A compiled module runs the source it was built from, not the .py as edited since: the
build writes MANIFEST (the SHA-256 of each compiled module's source at build time), and
tests/dispatcher/domain/test_compiled.py fails while any compiled module's source has changed
since (rebuild, or `--clean`). `--status` says the same without pytest.

Reproducible: mypy (which holds mypyc) is pinned in pyproject.toml's `compiled` extra; the C
compiler is the system's (gcc, with the Python headers). Artefacts: the extension modules
(`*.so`, git-ignored), MANIFEST, and mypyc's C sources under build/mypyc (git-ignored).

    ./dev compile            # install the `compiled` extra into .venv, then build
    ./dev compile --clean    # remove the extension modules: pure Python again
    ./dev compile --status   # which modules run compiled, and whether any is stale
    .venv/bin/python bench/compile.py [--clean | --status] [--tree DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
PACKAGE = "dispatcher.domain"
MODULES = ("agents", "routing")
# The shared library mypyc builds with the modules' code (one extension module per group; the
# per-module extension modules are shims that load it): dispatcher/domain/compiled__mypyc.*.so
GROUP = f"{PACKAGE}.compiled"
MANIFEST = Path(*PACKAGE.split("."), "compiled.json")
BUILD_DIR = Path("build", "mypyc")
MYPY_VERSION = "2.4.1"  # the pin of pyproject.toml's `compiled` extra
# The modules left interpreted are type-checked only for what the compiled ones read of them
# (silent: their own typing is theirs; tasks.py swaps a slot for a property).
MYPY_OPTIONS = ("--follow-imports=silent",)
SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def sources(tree: Path) -> list[Path]:
    return [tree.joinpath(*PACKAGE.split("."), f"{m}.py") for m in MODULES]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def artefacts(tree: Path) -> list[Path]:
    """The extension modules of a build found in `tree` (any Python version's, and those of
    modules an earlier build compiled that MODULES no longer lists)."""
    pkg = tree.joinpath(*PACKAGE.split("."))
    names = (*(p.stem for p in pkg.glob("*.py")), GROUP.rsplit(".", 1)[1] + "__mypyc")
    return sorted(p for n in names for p in pkg.glob(f"{n}.*.so"))


def clean(tree: Path) -> list[Path]:
    gone = artefacts(tree)
    for path in gone:
        path.unlink()
    (tree / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(tree / BUILD_DIR, ignore_errors=True)
    return gone


def build(tree: Path) -> None:
    """Compile MODULES in place (after removing any earlier build), then check that they are
    what Python imports, and write MANIFEST."""
    try:
        import mypy.version
        from mypyc.build import mypycify
        from setuptools import Distribution
    except ImportError as exc:
        raise SystemExit(f"the compiled build needs the `compiled` extra (./dev compile): {exc}") from None
    if mypy.version.__version__ != MYPY_VERSION:
        print(f"note: mypy {mypy.version.__version__}, not the pinned {MYPY_VERSION}",
              file=sys.stderr)
    clean(tree)
    os.chdir(tree)  # mypyc names modules after their paths from here
    paths = [str(p.relative_to(tree)) for p in sources(tree)]
    extensions = mypycify([*MYPY_OPTIONS, *paths], opt_level="3", group_name=GROUP,
                          target_dir=str(BUILD_DIR))
    # A Distribution of our own rather than setup(): setup() would read the project's
    # pyproject.toml, which older setuptools (a fresh venv's) cannot parse.
    dist = Distribution({"name": "switchboard-compiled-router", "ext_modules": extensions})
    command = dist.get_command_obj("build_ext")
    command.inplace = True
    command.build_temp = str(BUILD_DIR / "temp")
    command.build_lib = str(BUILD_DIR / "lib")
    dist.run_command("build_ext")
    running = imported(tree)
    wrong = [m for m, path in running.items() if not path.endswith(SUFFIXES)]
    if wrong:
        raise SystemExit(f"built, but Python still imports the .py of {', '.join(wrong)}")
    manifest = {"mypy": mypy.version.__version__, "python": sys.version.split()[0],
                "modules": {f"{PACKAGE}.{m}": digest(p) for m, p in zip(MODULES, sources(tree),
                                                                        strict=True)}}
    (tree / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def imported(tree: Path) -> dict[str, str]:
    """The file each of MODULES is imported from, in a fresh interpreter on `tree`."""
    code = ("import importlib, json, sys; print(json.dumps({m: importlib.import_module("
            f"'{PACKAGE}.' + m).__file__ for m in sys.argv[1:]}}))")
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, "-c", code, *MODULES], capture_output=True,
                          text=True, check=False, cwd=tree, env=env)
    if done.returncode != 0:
        raise SystemExit(f"importing the router failed:\n{done.stderr}")
    return json.loads(done.stdout)


def stale(tree: Path) -> list[str]:
    """The compiled modules whose source changed since the build (all of them when the build
    left no manifest)."""
    try:
        built = json.loads((tree / MANIFEST).read_text())["modules"]
    except (OSError, ValueError, KeyError):
        return [f"{PACKAGE}.{m}" for m in MODULES]
    return [f"{PACKAGE}.{m}" for m, p in zip(MODULES, sources(tree), strict=True)
            if built.get(f"{PACKAGE}.{m}") != digest(p)]


def status(tree: Path) -> int:
    found = artefacts(tree)
    if not found:
        print("pure Python: no compiled modules")
        return 0
    running = imported(tree)
    for module, path in running.items():
        print(f"{module:<8} {'compiled' if path.endswith(SUFFIXES) else 'pure Python'}: {path}")
    old = stale(tree)
    if old:
        print(f"STALE (source changed since the build): {', '.join(old)}; rebuild "
              "(./dev compile) or remove the build (./dev compile --clean)")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group()
    what.add_argument("--clean", action="store_true", help="remove the compiled modules")
    what.add_argument("--status", action="store_true", help="which modules run compiled")
    p.add_argument("--tree", type=Path, default=HERE, help="the checkout (default: this one)")
    args = p.parse_args(argv)
    tree = args.tree.resolve()
    if args.clean:
        gone = clean(tree)
        print(f"removed {len(gone)} extension module(s): pure Python")
        return 0
    if args.status:
        return status(tree)
    build(tree)
    return status(tree)


if __name__ == "__main__":
    raise SystemExit(main())
