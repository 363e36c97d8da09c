"""The process packages never import each other; what they share lives in boundary.

supervisor/, api/ and workers/ each run in their own processes. Whatever two
of them must agree on (frames, method ids, status and exit codes, socket
names, specs, the config, the nng and control-link adapters) lives in
boundary/, which imports none of them. A function-level import counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROCESS_PACKAGES = ("supervisor", "api", "workers")
# Only these modules may import pynng: every nng detail sits behind them.
NNG_ADAPTERS = {"boundary/nng_exchange.py", "boundary/nng_requester.py", "boundary/nng_replier.py"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules_of(folder: str) -> list[Path]:
    return sorted((ROOT / folder).glob("*.py"))


@pytest.mark.parametrize("package", PROCESS_PACKAGES)
def test_a_process_package_imports_no_other(package: str) -> None:
    others = [p for p in PROCESS_PACKAGES if p != package]
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules_of(package)
        for name in sorted(imported_modules(path))
        if any(name == f"layotto.{o}" or name.startswith(f"layotto.{o}.") for o in others)
    ]
    assert offenders == []


def test_boundary_imports_no_process_package() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules_of("boundary")
        for name in sorted(imported_modules(path))
        if any(name.startswith(f"layotto.{p}") for p in PROCESS_PACKAGES)
    ]
    assert offenders == []


def test_only_the_nng_adapters_import_pynng() -> None:
    folders = ("boundary", *PROCESS_PACKAGES, "components")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in folders
        for path in modules_of(folder)
        if str(path.relative_to(ROOT)) not in NNG_ADAPTERS
        and any(n == "pynng" or n.startswith("pynng.") for n in imported_modules(path))
    ]
    assert offenders == []


def test_the_checker_sees_function_level_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from layotto.api import main\n    import layotto.workers.x\n")
    assert {"layotto.api", "layotto.api.main", "layotto.workers.x"} <= imported_modules(module)


def test_the_supervisor_loads_neither_grpc_nor_nng() -> None:
    """Both start threads that a fork would break; the supervisor forks."""

    code = (
        "import sys, layotto.supervisor.cli, layotto.supervisor.runner;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'pynng')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
