"""Every tfdepth module imports in the installed environment, and every package it imports is declared.

CI runs this in a virtual environment made fresh from ``setup.cfg`` (``.ci/run``), so a dependency that
is only installed by hand on a developer's machine fails here with the module's name.
"""

import ast
import configparser
import importlib
import importlib.metadata as md
import pkgutil
import re
import sys
from pathlib import Path

import pytest

import tfdepth

REPO = Path(__file__).resolve().parents[1]


def _requirements():
    """{section: {normalised distribution name}} from setup.cfg's install_requires and extras."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")

    def names(text):
        lines = [ln.split("#")[0].strip() for ln in text.splitlines()]
        return {_norm(re.split(r"[<>=!~;\[ ]", ln)[0]) for ln in lines if ln}

    out = {"install_requires": names(cfg["options"]["install_requires"])}
    for extra, text in cfg["options.extras_require"].items():
        out[extra] = names(text)
    return out


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _all_modules():
    return sorted(m.name for m in pkgutil.walk_packages(tfdepth.__path__, "tfdepth."))


def test_every_module_imports():
    failures = []
    for name in _all_modules():
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 -- report every module, not just the first
            failures.append(f"{name}: {type(e).__name__}: {e}")
    assert not failures, "modules that do not import:\n" + "\n".join(failures)


def _third_party_imports(paths):
    """{top-level import name: first file importing it}, module level and inside functions."""
    found = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top not in sys.stdlib_module_names and top not in ("tfdepth", "__future__"):
                    found.setdefault(top, path.relative_to(REPO))
    return found


# imports that resolve to something other than a PyPI distribution of the same purpose
_NOT_DISTRIBUTIONS = {
    "tests", "conftest", "dist_worker", "helpers",  # the tests' own helper modules
}


@pytest.mark.parametrize("where,sections", [
    ("tfdepth", ("install_requires", "pth")),  # optional backends live in an extra of their own
    ("tests", ("install_requires", "pth", "dev", "ref")),
    ("tools", ("install_requires", "pth", "dev", "ref")),
])
def test_every_imported_package_is_declared(where, sections):
    reqs = _requirements()
    declared = set().union(*(reqs[s] for s in sections))
    # a declared distribution brings its own dependencies (tensorflow brings keras' and numpy's)
    closure = set(declared)
    for dist in declared:
        try:
            for req in md.requires(dist) or []:
                if "extra ==" not in req:
                    closure.add(_norm(re.split(r"[<>=!~;\[ (]", req)[0]))
        except md.PackageNotFoundError:
            pass
    top_to_dists = md.packages_distributions()
    undeclared = []
    local = {p.stem for p in (REPO / "tests").rglob("*.py")} | _NOT_DISTRIBUTIONS
    for top, path in sorted(_third_party_imports((REPO / where).rglob("*.py")).items()):
        if top in local:
            continue
        dists = {_norm(d) for d in top_to_dists.get(top, [])}
        if not dists:
            undeclared.append(f"{top} (imported by {path}) is not installed")
        elif not dists & closure:
            undeclared.append(f"{top} (imported by {path}, from {', '.join(sorted(dists))}) is not declared in "
                              f"setup.cfg [{' / '.join(sections)}]")
    assert not undeclared, "\n".join(undeclared)


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2 and "tfdepth.train --config" in block[0] and "pytest" in block[1], block
    ci = (REPO / ".ci" / "run").read_text()
    assert block[1].strip() in ci.splitlines(), "the README's test command must be the line .ci/run runs"
    assert "venv" in block[1], "the test command must run in a fresh virtual environment"
