"""The lock CI installs from (.ci/constraints.txt) covers what pyproject.toml declares.

pyproject.toml keeps ranges for users; CI installs exact versions so that a new
upstream release cannot break a fresh clone. These tests catch a dependency
added to pyproject.toml without re-locking, and a lock that drifted outside a
range pyproject.toml was tightened to.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / ".ci" / "constraints.txt"


def declared() -> list[Requirement]:
    """Runtime dependencies and the dev extra, as pyproject.toml names them."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    texts = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return [Requirement(text) for text in texts]


def pins() -> dict[str, Version]:
    """Normalised name -> locked version; every line must be an exact pin."""
    locked: dict[str, Version] = {}
    for number, line in enumerate(LOCK.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        specifiers = list(requirement.specifier)
        exact = len(specifiers) == 1 and specifiers[0].operator == "=="
        assert exact and "*" not in specifiers[0].version, (
            f"{LOCK.name} line {number}: expected an exact pin name==version, found {text!r}"
        )
        name = canonicalize_name(requirement.name)
        assert name not in locked, f"{LOCK.name} line {number}: {name} is pinned twice"
        locked[name] = Version(specifiers[0].version)
    return locked


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    locked = pins()
    problems = []
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        if name not in locked:
            problems.append(f"{requirement.name}: expected a pin, found none")
        elif not requirement.specifier.contains(locked[name], prereleases=True):
            problems.append(
                f"{requirement.name}: expected a version matching "
                f"{requirement.specifier}, found {locked[name]}"
            )
    assert not problems, f"{LOCK.name} against {PYPROJECT.name}:\n" + "\n".join(problems)


def test_the_project_itself_is_not_pinned() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert canonicalize_name(project["name"]) not in pins()
