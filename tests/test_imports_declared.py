"""Every third-party module the installed package imports is a declared runtime dependency.

A module that only arrives through another package's dependencies (h11 came
with trio-websocket) works until that package drops it, and a user's pip
never hears of our need for it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# The folders installed as layotto.* (pyproject.toml's package-dir).
PACKAGES = ("supervisor", "workers", "api", "components", "proto", "configs")


def imported_modules() -> dict[str, str]:
    """Top-level module name -> the first file importing it, outside the stdlib and us."""
    found: dict[str, str] = {}
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "layotto":
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_distribution_is_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {canonicalize_name(Requirement(text).name) for text in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    problems = []
    for module, where in sorted(imported_modules().items()):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists & declared:
            source = ", ".join(sorted(dists)) or "no installed distribution"
            problems.append(
                f"{where} imports {module} (from {source}): "
                "expected it in [project].dependencies, found it missing"
            )
    assert not problems, "\n".join(problems)


def test_every_source_package_is_installed() -> None:
    """A package folder pyproject.toml does not list works in an editable
    install and is missing from the wheel."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        "layotto." + str(init.parent.relative_to(ROOT)).replace("/", ".")
        for top in ("boundary", *PACKAGES)
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert folders <= set(setuptools["packages"])
    assert set(setuptools["packages"]) <= set(setuptools["package-dir"]) | {"layotto"}
